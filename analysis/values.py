"""Turning the store's pandas/numpy cells back into plain Python values (one rule, in tune_schane.store.records)."""

from __future__ import annotations

from tune_schane.store.records import plain

__all__ = ["plain"]
