"""The report says which backbones a sweep used and whether they started from scratch."""

from __future__ import annotations

import pandas as pd

from tune_schane.analysis.report import FROM_SCRATCH_NOTE, backbone_line, backbone_starts


def rows(*specs: tuple[str, bool, str | None]) -> pd.DataFrame:
    return pd.DataFrame([{"config_model": m, "config_pretrained": p, "config_weights": w} for m, p, w in specs])


def test_backbone_line_and_starts():
    scratch = rows(("test_vit", False, None), ("test_vit", False, None))
    assert backbone_line(scratch) == "test_vit (from scratch)"
    assert (backbone_starts(scratch) == "from scratch").all()
    mixed = rows(("mobilenetv2_100", True, None), ("test_vit", False, "/w.safetensors"), ("test_vit", False, None))
    assert backbone_line(mixed) == "mobilenetv2_100 (pretrained), test_vit (from scratch), test_vit (local weights)"
    assert not (backbone_starts(mixed) == "from scratch").all()
    assert backbone_line(pd.DataFrame({"x": [1]})) == "–"
    assert "docs/study.md" in FROM_SCRATCH_NOTE
