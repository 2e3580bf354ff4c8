"""One self-contained HTML report: plots embedded as base64 PNG, tables, the space and provenance.

It opens from disk in any browser with no server and no network (no external URL anywhere). A tiny
inline script counts the images that loaded and writes the count into ``#img-status``, which the
browser test reads back.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import plots
from .importance import param_importance
from .sensitivity import batch_size_table, batch_size_trend, paired_comparison
from .slices import SLICE_PARAMS, budget_table, slice_frame

STATUS_SCRIPT = """
<script>
(function () {
  function update() {
    var imgs = document.querySelectorAll('img.plot'), loaded = 0, failed = 0;
    imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) loaded++; else if (i.complete) failed++; });
    var text = 'loaded=' + loaded + ' failed=' + failed + ' total=' + imgs.length;
    document.getElementById('img-status').textContent = text;
  }
  window.addEventListener('load', update);
})();
</script>
"""
CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
img.plot{max-width:100%;border:1px solid #eee;margin:4px}
pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:12px}
.grid{display:flex;flex-wrap:wrap}.note{color:#555;font-size:13px}
"""


@dataclass
class Report:
    html: str
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG bytes
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _img(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return f'<img class="plot" alt="{html.escape(name)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    if frame.empty:
        return '<p class="note">(nothing to show)</p>'
    return frame.to_html(index=False, float_format=lambda v: f"{v:.{digits}g}", na_rep="–", border=0)


def build_report(trials: pd.DataFrame, epochs: pd.DataFrame, *, sweep_id: str, space_text: str | None,
                 store_uri: str) -> Report:
    tables = {
        "batch_size": batch_size_table(trials),
        "status": trials.groupby("status").size().rename("trials").reset_index(),
        "budget": budget_table(trials),
    }
    tables["trend"] = batch_size_trend(tables["batch_size"])
    tables["paired"] = paired_comparison(trials)
    tables["importance"] = param_importance(trials, by_loss=True)
    figures = {
        "batch_size": _png(plots.plot_batch_size(tables["batch_size"])),
        "relative_to_ce": _png(plots.plot_relative_to_ce(tables["batch_size"])),
        "importance": _png(plots.plot_importance(tables["importance"])),
        "budget": _png(plots.plot_budget(trials)),
        "learning_curves": _png(plots.plot_learning_curves(epochs, trials)),
    }
    for param in SLICE_PARAMS:
        frame = slice_frame(trials, param)
        if len(frame):
            figures[f"slice_{param}"] = _png(plots.plot_slice(frame, param))
    best_cols = ["trial_id", "status", "config_loss", "config_batch_size", "config_tau", "config_beta", "config_lam",
                 "config_lr", "config_seed", "epochs_run", "best_objective", "final_objective"]
    mode = str(trials["objective_mode"].dropna().iloc[0]) if trials["objective_mode"].notna().any() else "max"
    best = trials.dropna(subset=["best_objective"]).sort_values("best_objective", ascending=mode == "min")
    tables["best"] = best[best_cols].head(10)
    versions = trials["versions"].dropna().iloc[-1] if trials["versions"].notna().any() else "{}"
    commits = sorted(set(trials["commit"].dropna().astype(str)))
    objective = str(trials["objective_name"].dropna().iloc[0]) if trials["objective_name"].notna().any() else "?"
    slices = "".join(_img(n, p) for n, p in figures.items() if n.startswith("slice_"))
    body = f"""
<h1>tune-schane report: {html.escape(sweep_id)}</h1>
<p class="note">{len(trials)} trials; objective {html.escape(objective)} ({mode}); store {html.escape(store_uri)};
generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. <span id="img-status">images not counted yet</span></p>
<h2>Trials by status</h2>{_table(tables["status"])}
<h2>Batch-size sensitivity</h2>
<p class="note">Per loss family and batch size, over completed trials: best and mean objective with a 95% bootstrap
CI; counts of every status (failed trials are kept); deltas to CE at the same batch size.</p>
{_img("batch_size", figures["batch_size"])}{_img("relative_to_ce", figures["relative_to_ce"])}
{_table(tables["batch_size"])}
<h3>Trend against log2(batch size)</h3>
<p class="note">slope: change of the objective per doubling of the batch; drop: largest minus smallest batch size;
*_vs_ce: the same minus CE's (negative = less batch-sensitive than CE).</p>{_table(tables["trend"])}
<h3>Paired against CE (same batch size and seed)</h3>{_table(tables["paired"])}
<h2>Parameter importance</h2>{_img("importance", figures["importance"])}{_table(tables["importance"])}
<h2>Slices</h2><div class="grid">{slices}</div>
<h2>Budget (ASHA)</h2>{_img("budget", figures["budget"])}{_table(tables["budget"])}
{_img("learning_curves", figures["learning_curves"])}
<h2>Best trials</h2>{_table(tables["best"])}
<h2>Search space</h2><pre>{html.escape(space_text or "(not recorded: single training runs)")}</pre>
<h2>Provenance</h2><p>commit(s): {html.escape(", ".join(commits) or "unknown")}</p>
<pre>{html.escape(json.dumps(json.loads(versions), indent=2, sort_keys=True))}</pre>
"""
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>tune-schane: "
            f"{html.escape(sweep_id)}</title><style>{CSS}</style></head><body>{body}{STATUS_SCRIPT}</body></html>")
    return Report(page, figures, tables)


def write_report(report: Report, out_dir: str | Path) -> Path:
    """``out_dir/report.html`` (atomically), ``out_dir/plots/*.png`` and ``out_dir/tables/*.csv``."""
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    for name, png in report.figures.items():
        (out / "plots" / f"{name}.png").write_bytes(png)
    for name, frame in report.tables.items():
        frame.to_csv(out / "tables" / f"{name}.csv", index=False)
    tmp = out / f".report.html.{os.getpid()}.tmp"
    tmp.write_text(report.html, encoding="utf-8")
    return tmp.replace(out / "report.html")
