"""Search-space files: where to change what a sweep may sample and how a space file is read.

- :mod:`.search_space`: ``SearchSpace`` (grid cells, parameters, the trial configs it makes), ``load_space``;
- :mod:`.schema`: the space file's keys, checked with one line per mistake; :mod:`._params`: the parameter kinds;
- :mod:`.catalog`: the shipped spaces (``tune_schane/spaces/*.yaml``) by short name;
- :mod:`.storage`: where each cell's Optuna study is kept (``storage:``).
"""

from .catalog import default_space_path
from .search_space import SearchSpace, apply_overrides, builtin_dir, builtin_spaces, load_space, parse_space

__all__ = ["SearchSpace", "apply_overrides", "builtin_dir", "builtin_spaces", "default_space_path", "load_space",
           "parse_space"]
