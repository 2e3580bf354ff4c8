"""Benchmarks: each prints ratios against a reference measured in the same run.

``python -m benchmarks`` runs them all; ``python -m benchmarks.loss`` runs one.
"""
