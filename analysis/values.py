"""Turning the store's pandas/numpy cells back into plain Python values."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def plain(value: Any) -> Any:
    """A YAML-safe Python scalar: numpy/pandas scalars unwrapped; NaN, None, NA and NaT -> None.

    A null config cell is a conditional parameter the trial did not use (τ for ce, λ for supcon).
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
