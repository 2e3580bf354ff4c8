"""One self-contained HTML report: plots embedded as base64 PNG, tables, the space and provenance.

Self-contained because reports get mailed, attached to tickets and opened years later from disk:
no server, no network, no external URL anywhere (plots are ``data:image/png;base64`` images, CSS is
inline). Nothing needs JavaScript to read; one tiny inline script only marks each image as loaded
or failed (``data-loaded``) and writes the counts into the hidden ``#img-status`` (``loaded=N
failed=M total=T``, not shown on the page), which the headless-browser test reads back from the DOM.

:func:`build_report` returns a :class:`Report`: the page, and the PNGs and tables it was built from,
so :func:`write_report` saves them beside the page from the data, without rendering twice or reading
the page back. Parameter importance uses the distributions of the sweep's saved search space. All
file writing is in :func:`write_report`.
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
from typing import Any

import pandas as pd

from . import confirmed
from .expected_max import expected_max_table
from .importance import param_importance
from .seed_stats import paired_differences
from .sensitivity import batch_size_table, batch_size_trend, objective_mode, paired_seeds, seed_slope_table
from .slices import SLICE_PARAMS, budget_per_trial, budget_table, slice_frame

BEST_COLUMNS = ["trial_id", "status", "config_loss", "config_batch_size", "config_tau", "config_beta",
                "config_lam", "config_lr", "config_weight_decay", "config_seed", "config_epochs", "epochs_run",
                "best_objective", "final_objective"]
IMG_STATUS_SCRIPT = """<script>
(function () {
  function count() {
    var imgs = document.querySelectorAll('img'), loaded = 0, failed = 0;
    for (var i = 0; i < imgs.length; i++) {
      var ok = imgs[i].complete && imgs[i].naturalWidth > 0;
      imgs[i].setAttribute('data-loaded', ok ? 'true' : 'false');
      if (ok) { loaded++; } else { failed++; }
    }
    document.getElementById('img-status').textContent =
      'loaded=' + loaded + ' failed=' + failed + ' total=' + imgs.length;
  }
  window.addEventListener('load', count);
})();
</script>"""
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1150px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.2em}
td,th{border:1px solid #ccc;padding:2px 7px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
img.plot{max-width:100%;border:1px solid #eee;margin:4px}
pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:12px}
.grid{display:flex;flex-wrap:wrap}.scroll{overflow-x:auto;max-width:100%}.note{color:#555;font-size:13px}
.warn{background:#fff4e0;border-left:4px solid #e8a33d;padding:.4em .8em;font-size:13px}
#img-status{display:none}
"""


@dataclass(frozen=True)
class Report:
    """The report's HTML page, the PNGs it embeds (``figures``: name -> bytes) and its ``tables``."""

    html: str
    figures: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _img(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="plot" alt="{html.escape(name)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, digits: int = 4) -> str:
    if frame.empty:
        return '<p class="note">(nothing to show)</p>'
    shown = frame.rename(columns=lambda c: c.removeprefix("config_") if isinstance(c, str) else c)
    for column in shown.columns:  # nullable ints print NA as "<NA>"; show them like NaN floats
        if isinstance(shown[column].dtype, pd.api.extensions.ExtensionDtype) and shown[column].isna().any():
            shown[column] = shown[column].astype(object).where(shown[column].notna(), "–")
    table = shown.to_html(index=False, float_format=lambda v: f"{v:.{digits}g}", na_rep="–", border=0,
                          escape=True)
    return f'<div class="scroll">{table}</div>'


def _first(trials: pd.DataFrame, column: str, default: str) -> str:
    if column not in trials:
        return default
    values = trials[column].dropna()
    return str(values.iloc[0]) if len(values) else default


FROM_SCRATCH_NOTE = ("Every backbone in this sweep was trained from scratch (no pretrained weights). In that regime "
                     "the contrastive families are not expected to beat CE; the regime the SCHaNe and CLCE papers "
                     "study is fine-tuning a pretrained backbone: see docs/study.md.")


def backbone_starts(trials: pd.DataFrame) -> pd.Series:
    """Per trial, how its backbone started: ``pretrained``, ``local weights`` or ``from scratch``."""
    pretrained = trials.get("config_pretrained", pd.Series(False, index=trials.index)).fillna(False).astype(bool)
    weights = trials.get("config_weights", pd.Series(None, index=trials.index))
    start = pd.Series("from scratch", index=trials.index).mask(pretrained, "pretrained")
    return start.mask(weights.notna(), "local weights")


def backbone_line(trials: pd.DataFrame) -> str:
    """The backbones of a sweep and how they started, e.g. ``mobilenetv2_100 (pretrained)``."""
    if "config_model" not in trials:
        return "–"
    pairs = zip(trials["config_model"].astype(str), backbone_starts(trials), strict=True)
    return ", ".join(sorted({f"{model} ({start})" for model, start in pairs}))


def _versions(trials: pd.DataFrame) -> dict[str, list[str]]:
    """Package -> the distinct versions the trials recorded (more than one means a mixed sweep)."""
    seen: dict[str, set[str]] = {}
    for raw in trials.get("versions", pd.Series(dtype=object)).dropna():
        try:
            parsed = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if isinstance(parsed, dict):
            for key, value in parsed.items():
                seen.setdefault(str(key), set()).add(str(value))
    return {k: sorted(v) for k, v in sorted(seen.items())}


def _best_table(trials: pd.DataFrame, mode: str, n: int = 10) -> pd.DataFrame:
    objective = pd.to_numeric(trials["best_objective"], errors="coerce")
    ranked = trials[(trials["status"].astype(str) == "completed") & objective.notna()].copy()
    ranked["_o"] = pd.to_numeric(ranked["best_objective"]).astype("float64")
    ranked["_t"] = ranked["trial_id"].astype(str)
    ranked = ranked.sort_values(["_o", "_t"], ascending=[mode == "min", True], kind="stable").head(n)
    return ranked[[c for c in BEST_COLUMNS if c in ranked]].reset_index(drop=True)


def saved_space(space_text: str | None):
    """The sweep's saved search space as a SearchSpace; None when there is none or it no longer parses."""
    if not space_text:
        return None
    import yaml

    from tune_schane.errors import BadInput
    from tune_schane.space import parse_space

    try:
        data = yaml.safe_load(space_text)
        return parse_space(data) if isinstance(data, dict) else None
    except (BadInput, yaml.YAMLError):
        return None


def space_distributions(space_text: str | None) -> dict[str, Any] | None:
    """The Optuna distributions of a saved search space; None when there is none or it no longer parses."""
    space = saved_space(space_text)
    return space.distributions() if space is not None else None


def build_tables(trials: pd.DataFrame, epochs: pd.DataFrame,
                 distributions: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """Every table the report shows, by name (also written as CSV beside the report).

    Search-stage tables (chosen and scored on val: selection, optimistic) come from the search rows;
    ``confirm_*`` tables from the confirm rows (test split, fresh seeds). ``distributions``: the sweep's
    parameter distributions (:func:`space_distributions`) for importance.
    """
    search = confirmed.search_part(trials)
    table = batch_size_table(search)
    status = (trials.assign(stage=confirmed.stages(trials)).groupby(["stage", "status"]).size()
              .rename("trials").reset_index())
    mode = objective_mode(search)
    completed = search[search["status"].astype(str) == "completed"]
    curves = expected_max_table(pd.DataFrame({"loss": completed["config_loss"], "batch_size": completed[
        "config_batch_size"], "value": completed["best_objective"]}), n_boot=300, mode=mode)
    return {
        "status": status.sort_values(["stage", "status"], ignore_index=True),
        "confirm_summary": confirmed.confirm_summary(trials),
        "confirm_paired": confirmed.confirm_paired(trials),
        "confirm_prob": confirmed.confirm_prob_improvement(trials),
        "confirm_slopes": confirmed.confirm_slopes(trials),
        "batch_size": table,
        "trend": batch_size_trend(table),
        "slope_ci": seed_slope_table(search),
        "paired": paired_seeds(search),
        "effort": confirmed.effort_table(trials),
        "expected_best": curves,
        "importance": param_importance(search, by_loss=True, distributions=distributions),
        "budget": budget_table(search, epochs),
        "best": _best_table(search, mode),
    }


def _warn(notes: dict[str, str], key: str) -> str:
    return f'<p class="warn">{html.escape(notes[key])}</p>' if key in notes else ""


def build_report(trials: pd.DataFrame, epochs: pd.DataFrame, *, sweep_id: str, space_text: str | None,
                 store_uri: str) -> Report:
    """The whole report (a :class:`Report`: the page, its figures and tables); see the module docstring."""
    from . import plots

    search = confirmed.search_part(trials)
    mode = objective_mode(search)
    objective = _first(search, "objective_name", "objective")
    space = saved_space(space_text)
    tables = build_tables(trials, epochs, space.distributions() if space is not None else None)
    notes = confirmed.guard_rails(trials, searcher=getattr(space, "searcher", None),
                                  startup_trials=getattr(space, "startup_trials", None),
                                  repeats=getattr(space, "repeats", None))
    figures = {
        "batch_size": _png(plots.plot_batch_size(tables["batch_size"], objective=objective)),
        "relative_to_ce": _png(plots.plot_relative_to_ce(tables["batch_size"])),
        "expected_best": _png(plots.plot_expected_max(tables["expected_best"], objective=objective)),
        "importance": _png(plots.plot_importance(tables["importance"])),
        "budget": _png(plots.plot_budget(budget_per_trial(search, epochs))),
        "learning_curves": _png(plots.plot_learning_curves(epochs, search)),
    }
    has_confirm = not tables["confirm_summary"].empty
    if has_confirm:
        figures["confirm_paired"] = _png(plots.plot_paired_seeds(paired_differences(confirmed.headline(trials))))
    for param in SLICE_PARAMS:
        if f"config_{param}" in search:
            frame = slice_frame(search, param)
            if len(frame):
                figures[f"slice_{param}"] = _png(plots.plot_slice(frame, param))
    counts = ", ".join(f"{n} {st} {s}" for st, s, n in tables["status"].itertuples(index=False))
    commits = sorted(set(trials["commit"].dropna().astype(str))) if "commit" in trials else []
    versions = _versions(trials)
    slices = "".join(_img(n, p) for n, p in figures.items() if n.startswith("slice_"))
    random_searcher = getattr(space, "searcher", None) == "random"
    esc = html.escape
    confirm_section = f"""
<h2>Confirmed results (test split, fresh seeds)</h2>
<p class="note">Each cell's finalist(s) and the baseline's best at the same cell, retrained to the full budget
on fresh seeds shared by every config (each seed a new few-shot subset, never used by the search) and scored
once on the sealed test split. Intervals are 95 % t-intervals over seeds (n beside each; none below 5 seeds).
selection_val is what the search reported for that config on val: {esc(confirmed.SELECTION)};
val_minus_test is the winner's curse of that choice, with its interval.</p>
{_table(tables["confirm_summary"])}
<h3>Paired against CE on test (same batch size and seed)</h3>
<p class="note">Family minus CE per seed; the rows with batch size "–" average each seed's differences over the
batch sizes first, so n counts seeds, never seeds × batch sizes.</p>
{_img("confirm_paired", figures["confirm_paired"]) if has_confirm else ""}{_table(tables["confirm_paired"])}
<p class="note">Probability of improvement P(family &gt; CE) over seeds and batch sizes (Agarwal et al. 2021),
interval by resampling seeds.</p>{_table(tables["confirm_prob"])}
<p class="note">Slope per doubling of the batch fitted per seed (least squares on log2 batch size), interval over
seeds; slope_vs_baseline: the slope of the paired difference (negative: the family gains less from bigger
batches than CE).</p>{_table(tables["confirm_slopes"])}""" if has_confirm else ""
    body = f"""
<h1>tune-schane report: {esc(sweep_id)}</h1>
<p>{len(trials)} trials ({esc(counts)}); objective <b>{esc(objective)}</b> ({esc(mode)}imised).
Backbone: {esc(backbone_line(trials))}.</p>
{f'<p class="note"><b>{esc(FROM_SCRATCH_NOTE)}</b></p>' if (backbone_starts(trials) == "from scratch").all() else ""}
<p class="note">store {esc(store_uri)}; generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>
{_warn(notes, "headline")}{_warn(notes, "val")}
{confirm_section}
<h2>Trials by stage and status</h2>{_table(tables["status"])}
<h2>Search stage: batch-size sensitivity ({esc(confirmed.SELECTION)})</h2>
{_warn(notes, "epoch")}
<p class="note">Per loss family and batch size, over completed search trials (pruned trials stopped at a lower
fidelity and are left out): best and mean objective on val, with a 95 % t-interval over seeds (a seed's trials
averaged first; none below 5 seeds, ci_note says so); counts of every status (failed trials are kept: a batch
size where all trials failed is shown, marked ✕ in the plot); deltas are this family minus CE at the same batch
size.</p>
{_img("batch_size", figures["batch_size"])}{_img("relative_to_ce", figures["relative_to_ce"])}
{_table(tables["batch_size"])}
<h3>Trend against log2(batch size)</h3>
<p class="note">slope: least-squares change of the objective per doubling of the batch; drop: value at the largest
minus the smallest batch size with data; *_vs_ce: the same minus CE's. A family is less batch-sensitive
than CE when its slope is nearer zero than CE's: with CE's slope positive (gaining with the batch) that is a
negative *_vs_ce, with CE's slope negative a positive one.</p>{_table(tables["trend"])}
<p class="note">Slope per doubling fitted per seed (each seed's best trial per batch size), interval over seeds;
slope_vs_baseline is the slope of the seed's difference to CE.</p>{_table(tables["slope_ci"])}
<h3>Paired against CE (same batch size and seed)</h3>
<p class="note">Difference family minus CE per seed, best search trial per (family, batch size, seed); rows with
batch size "–" average each seed over the batch sizes. n counts seeds (few-shot subsets).</p>
{_table(tables["paired"])}
<h2>Equal effort: expected best of n trials</h2>
{_warn(notes, "effort")}{_warn(notes, "tpe")}
<p class="note">Expected best val objective among n trials of a family at a batch size (Dodge et al. 2019;
Tang et al.'s unbiased estimator from the completed search trials, band by bootstrap over trials), so families
are compared at the same number of trials. {"The sweep sampled configs at random: the estimator's i.i.d. "
"assumption holds." if random_searcher else "These trials were proposed by TPE, not drawn i.i.d. as the "
"estimator assumes: the curves describe this search; a study that wants them exact uses `searcher: random`."}
</p>{_img("expected_best", figures["expected_best"])}{_table(tables["effort"])}
<h2>Parameter importance</h2>
<p class="note">Optuna fANOVA (seeded) on a study rebuilt from the completed search trials; "all" covers the
parameters every trial has, each family's scope its own (τ, β, λ are conditional).</p>
{_img("importance", figures["importance"])}{_table(tables["importance"])}
<h2>Slices</h2><div class="grid">{slices or '<p class="note">(no τ/β/λ/lr values recorded)</p>'}</div>
<h2>Budget (ASHA)</h2>{_img("budget", figures["budget"])}{_table(tables["budget"])}
{_img("learning_curves", figures["learning_curves"])}
<h2>Best search trials (top 10 completed; {esc(confirmed.SELECTION)})</h2>{_table(tables["best"])}
<h2>Search space</h2><pre>{esc(space_text) if space_text else "(not recorded: single training runs)"}</pre>
<h2>Provenance</h2>
<p>store: <code>{esc(store_uri)}</code><br>sweep: <code>{esc(sweep_id)}</code><br>
commit(s): <code>{esc(", ".join(commits) or "unknown")}</code></p>
<p class="note">Package versions the trials recorded (more than one version of a package: a mixed sweep).</p>
{_table(pd.DataFrame({"package": list(versions), "versions": [", ".join(v) for v in versions.values()]}))}
"""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>tune-schane: {esc(sweep_id)}</title><style>{CSS}</style></head>"
            f'<body>{body}<span id="img-status"></span>{IMG_STATUS_SCRIPT}</body></html>\n')
    return Report(page, figures, tables)


def write_report(report: Report, out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` atomically, plus ``out_dir/plots/*.png`` and ``out_dir/tables/*.csv``.

    The page is written under a hidden temporary name and renamed, so a reader (or a browser
    refreshing) never sees half a report. Returns the path of ``report.html``.
    """
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for name, png in report.figures.items():
        (out / "plots" / f"{name}.png").write_bytes(png)
    if report.tables:
        (out / "tables").mkdir(exist_ok=True)
        for name, frame in report.tables.items():
            frame.to_csv(out / "tables" / f"{name}.csv", index=False)
    final = out / "report.html"
    tmp = out / f".report.html.{os.getpid()}.tmp"
    try:
        tmp.write_text(report.html, encoding="utf-8")
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
