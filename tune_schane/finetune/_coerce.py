"""One config value checked against its field's type hint, with the few conversions YAML needs."""

from __future__ import annotations

import re
import typing
from typing import Any

from ..errors import BadInput

_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint)
    if value is None:
        if optional:
            return None
        raise BadInput(f"{source}: {key} must not be null")
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads `1e-4` (no dot) as a string; it is meant as a number
    elif base is str:
        if isinstance(value, str):
            return value
    raise BadInput(f"{source}: {key} must be {base.__name__}{' or null' if optional else ''}, "
                   f"got {value!r}")
