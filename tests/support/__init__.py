"""Helpers shared by the tests (no test lives here): fixtures' builders, references, Ray process tools."""
