"""A tiny sweep's fixed settings and a space file written from text (tests that run real sweeps)."""

from __future__ import annotations

import textwrap

FAST_FIXED = """\
fixed:
  model: test_vit
  dataset: digits
  img_size: 16
  shots: 12
  num_threads: 1
  warmup_epochs: 0
"""


def write_space(tmp_path, body: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path
