"""The shipped search spaces: where they live, their short names, and how a SPACE argument is found.

They are package data (``tune_schane/spaces/*.yaml``), so a wheel installed without ``-e`` carries
them; the repository's ``search_spaces/`` is a link to that folder, so the paths README, Makefile
and docs name keep working in a clone. A space's short name is its file name without ``.yaml``
(``batch_size_ablation``), which is what ``tune-schane spaces`` lists and ``sweep`` accepts.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import BadInput

SPACES_DIR = Path(__file__).resolve().parents[1] / "spaces"  # tune_schane/spaces, package data
DEFAULT_SPACE = "default"


def shipped_spaces() -> list[Path]:
    """The shipped space files, sorted by name."""
    return sorted(SPACES_DIR.glob("*.yaml"))


def default_space_path() -> Path:
    """The space ``tune-schane sweep`` runs with no SPACE argument."""
    return SPACES_DIR / f"{DEFAULT_SPACE}.yaml"


def resolve_space(text: str | Path | None) -> Path:
    """A SPACE argument as a file: an existing path as given, else a shipped space's short name.

    A path (anything with a folder or a ``.yaml``/``.yml`` suffix) that does not exist is left as it
    is, so the space loader names it ("no such file"); an unknown short name lists the shipped ones.
    """
    if text is None:
        return default_space_path()
    path = Path(text)
    if path.exists() or len(path.parts) > 1 or path.suffix in (".yaml", ".yml"):
        return path
    shipped = {p.stem: p for p in shipped_spaces()}
    if str(text) in shipped:
        return shipped[str(text)]
    raise BadInput(f"space {str(text)!r}: no such file and no shipped space of that name "
                   f"(shipped: {', '.join(shipped)}; `tune-schane spaces` lists them)")


def one_line(description: str, width: int = 100) -> str:
    """The first sentence of a description, cut to ``width`` characters."""
    text = " ".join(description.split())
    first = text.split(". ", 1)[0].rstrip(".")
    first = first + "." if first else ""
    return first if len(first) <= width else first[: width - 1].rstrip() + "…"


def catalog() -> list[tuple[str, str]]:
    """``(short name, one-line description)`` of every shipped space, read without validating it."""
    rows = []
    for path in shipped_spaces():
        data = yaml.safe_load(path.read_text()) or {}
        rows.append((path.stem, one_line(str(data.get("description") or data.get("name") or ""))))
    return rows
