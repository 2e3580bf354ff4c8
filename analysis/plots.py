"""Figures (matplotlib, headless): each takes DataFrame(s) and an optional ``ax`` and returns the figure.

matplotlib is imported inside the functions (with the Agg backend forced) so that ``import analysis``
stays light and a report renders on a machine without a display. Every function draws something
readable for an empty or degenerate input (a note on the axes) instead of raising: a report of a
sweep that just started should still render.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

FAMILY_STYLE = {"ce": ("#7f7f7f", "o"), "supcon": ("#1f77b4", "s"), "schane": ("#d62728", "^"),
                "clce": ("#2ca02c", "D"), "supcon_ce": ("#17becf", "v")}
STATUS_COLOURS = {"completed": "#2ca02c", "pruned": "#ff7f0e", "diverged": "#d62728", "oom": "#9467bd",
                  "error": "#8c564b", "running": "#7f7f7f"}
LOG_PARAMS = ("lr", "tau")


def _axes(ax: Any = None, size: tuple[float, float] = (6.4, 4.0)) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=size, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _style(loss: str) -> tuple[str | None, str]:
    return FAMILY_STYLE.get(loss, (None, "o"))


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")


def _log2_batch_axis(ax: Any, sizes: pd.Series) -> None:
    values = sorted({int(v) for v in pd.to_numeric(sizes, errors="coerce").dropna()})
    if not values:
        return
    ax.set_xscale("log", base=2)
    ax.set_xticks(values, [str(v) for v in values])
    ax.minorticks_off()
    ax.set_xlim(values[0] / 2**0.4, values[-1] * 2**0.4)  # room for the end markers and their labels


def plot_batch_size(table: pd.DataFrame, ax: Any = None, objective: str = "objective") -> Any:
    """Best (solid) and mean ± bootstrap CI (dashed, error bars) against batch size, one colour per family.

    The x axis is log2 because batch sizes are swept in doublings. A cell whose trials all failed
    (OOM, diverged, error) has no objective; it is marked with an ✕ at the bottom of the axes, with
    its counts, so that a missing point reads as "failed there" rather than "not tried".
    """
    fig, ax = _axes(ax)
    if table.empty:
        _note(ax, "no trials")
        return fig
    for index, (loss, part) in enumerate(table.sort_values("batch_size").groupby("loss", sort=True)):
        colour, marker = _style(str(loss))
        ok = part[np.isfinite(part["best"].to_numpy(dtype="float64"))]
        if len(ok):
            ax.plot(ok["batch_size"], ok["best"], marker=marker, color=colour, label=f"{loss} best")
            err = np.vstack([ok["mean"] - ok["ci_low"], ok["ci_high"] - ok["mean"]]).astype("float64")
            ax.errorbar(ok["batch_size"], ok["mean"], yerr=np.clip(err, 0, None), color=colour, linestyle="--",
                        marker=marker, markerfacecolor="none", alpha=0.6, capsize=3, label=f"{loss} mean ± CI")
        failed = part[~np.isfinite(part["best"].to_numpy(dtype="float64"))]
        if len(failed):
            height = 0.04 + 0.06 * index  # one row per family, so two families failing at one size both show
            ax.scatter(failed["batch_size"], [height] * len(failed), transform=ax.get_xaxis_transform(), marker="x",
                       color=colour, s=60, label=f"{loss}: no usable trial")
            for _, row in failed.iterrows():
                counts = ", ".join(f"{int(row[c])} {c[2:]}" for c in row.index
                                   if c.startswith("n_") and c not in ("n_trials", "n_used") and row[c])
                ax.annotate(f"{loss}: {counts or 'none usable'}", (row["batch_size"], height),
                            xycoords=("data", "axes fraction"), xytext=(6, 0), textcoords="offset points",
                            fontsize=6, color=colour, ha="left", va="center")
    _log2_batch_axis(ax, table["batch_size"])
    ax.set_xlabel("batch size (log2 scale)")
    ax.set_ylabel(f"{objective} (best solid; mean ± CI dashed)")
    ax.set_title("Objective against batch size")
    ax.legend(fontsize=7, ncols=2, loc="best", framealpha=0.8)
    ax.grid(alpha=0.3)
    return fig


def plot_relative_to_ce(table: pd.DataFrame, ax: Any = None) -> Any:
    """Each family's best minus CE's best at the same batch size: the gain the loss buys, per batch size."""
    fig, ax = _axes(ax)
    finite = table[(table["loss"] != "ce") & np.isfinite(table["delta_best_vs_ce"].to_numpy(dtype="float64"))]
    for loss, part in finite.sort_values("batch_size").groupby("loss", sort=True):
        colour, marker = _style(str(loss))
        ax.plot(part["batch_size"], part["delta_best_vs_ce"], marker=marker, color=colour, label=f"{loss} best")
        ax.plot(part["batch_size"], part["delta_mean_vs_ce"], marker=marker, color=colour, linestyle="--",
                markerfacecolor="none", alpha=0.6, label=f"{loss} mean")
    ax.axhline(0, color="#7f7f7f", linewidth=1)
    if len(finite):
        _log2_batch_axis(ax, finite["batch_size"])
        ax.legend(fontsize=7, ncols=2)
    else:
        _note(ax, "no batch size where CE and another family both completed")
    ax.set_xlabel("batch size (log2 scale)")
    ax.set_ylabel("objective minus CE's at the same batch size")
    ax.set_title("Gain over cross-entropy")
    ax.grid(alpha=0.3)
    return fig


def plot_importance(importance: pd.DataFrame, ax: Any = None) -> Any:
    """Horizontal bars of the ``all`` scope's importances (a family's scope when there is no ``all``)."""
    fig, ax = _axes(ax)
    scopes = list(dict.fromkeys(importance["scope"])) if len(importance) else []
    scope = "all" if "all" in scopes else (scopes[0] if scopes else None)
    if scope is None:
        _note(ax, "not enough completed trials, or no parameter varies")
    else:
        part = importance[importance["scope"] == scope].sort_values("importance")
        ax.barh(part["param"].astype(str), part["importance"], color="#1f77b4")
        ax.set_title(f"Parameter importance ({scope})")
    ax.set_xlabel("importance (normalised: sums to 1)")
    return fig


def plot_slice(frame: pd.DataFrame, param: str, ax: Any = None) -> Any:
    """The objective against one hyperparameter, one colour per family; pruned trials hollow."""
    fig, ax = _axes(ax, size=(4.8, 3.4))
    if frame.empty:
        _note(ax, f"no trial with {param} set")
    for loss, part in frame.groupby("loss", sort=True):
        colour, marker = _style(str(loss))
        done = part[part["status"] == "completed"]
        other = part[part["status"] != "completed"]
        ax.scatter(done["value"], done["objective"], color=colour, marker=marker, label=str(loss), alpha=0.8)
        if len(other):
            ax.scatter(other["value"], other["objective"], facecolors="none", edgecolors=colour, marker=marker,
                       alpha=0.6, label=f"{loss} (pruned)")
    if param in LOG_PARAMS and len(frame) and (frame["value"] > 0).all():
        ax.set_xscale("log")
        low, high = float(frame["value"].min()), float(frame["value"].max())
        if high > low:  # a few labelled ticks across the data: default log ticks crowd or vanish in < 1 decade
            ticks = np.geomspace(low, high, 4)
            ax.set_xticks(ticks, [f"{v:.2g}" for v in ticks])
            ax.minorticks_off()
    ax.set_xlabel(param)
    ax.set_ylabel("best objective")
    ax.set_title(f"Objective against {param}")
    if len(frame):
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def plot_budget(budget: pd.DataFrame, ax: Any = None) -> Any:
    """Epochs each trial ran (from :func:`analysis.slices.budget_per_trial`), coloured by status.

    Sorted by epochs, so ASHA's savings show as the long tail of short orange (pruned) bars.
    """
    fig, ax = _axes(ax)
    if budget.empty:
        _note(ax, "no trials")
        return fig
    order = budget.sort_values(["epochs_run", "trial_id"], ascending=[False, True], kind="stable")
    colours = [STATUS_COLOURS.get(s, "#7f7f7f") for s in order["status"]]
    ax.bar(range(len(order)), order["epochs_run"], color=colours, width=0.9)
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    handles = []
    for status, colour in STATUS_COLOURS.items():
        n = int((order["status"] == status).sum())
        if n:
            spent = int(order.loc[order["status"] == status, "epochs_run"].sum())
            handles.append(Patch(color=colour, label=f"{status}: {n} trials, {spent} epochs"))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (sorted by epochs run)")
    ax.set_ylabel("epochs run")
    ax.set_title(f"Budget: {int(order['epochs_run'].sum())} epochs over {len(order)} trials")
    ax.legend(handles=handles, fontsize=8)
    return fig


def plot_learning_curves(epochs: pd.DataFrame, trials: pd.DataFrame, ax: Any = None,
                         metric: str | None = None) -> Any:
    """The objective against epoch for every trial; completed solid, pruned (stopped early) dashed.

    ``metric`` defaults to the sweep's ``objective_name`` (``val_top1`` when unrecorded).
    """
    fig, ax = _axes(ax)
    if metric is None:
        names = trials["objective_name"].dropna() if "objective_name" in trials else pd.Series(dtype=object)
        metric = str(names.iloc[0]) if len(names) else "val_top1"
    if epochs.empty or metric not in epochs:
        _note(ax, f"no per-epoch {metric} recorded")
        ax.set_title("Learning curves")
        return fig
    info = trials.assign(trial_id=trials["trial_id"].astype(str)).set_index("trial_id")
    for trial_id, part in epochs.sort_values("epoch").groupby(epochs["trial_id"].astype(str)):
        if trial_id not in info.index:
            continue
        loss, status = str(info.loc[trial_id, "config_loss"]), str(info.loc[trial_id, "status"])
        style = "-" if status == "completed" else "--"
        ax.plot(part["epoch"], part[metric], color=_style(loss)[0], alpha=0.6, linestyle=style, linewidth=1,
                marker="o", markersize=2.5)  # markers keep a one-epoch (pruned at the first rung) trial visible
    for loss in sorted(set(info["config_loss"].astype(str))):
        ax.plot([], [], color=_style(loss)[0], label=loss)
    ax.plot([], [], color="#555555", linestyle="--", label="stopped early")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves (dashed: pruned or failed)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_expected_max(table: pd.DataFrame, ax: Any = None, objective: str = "objective") -> Any:
    """Expected best of n trials against n, one panel per batch size, a line and band per family.

    ``table`` is :func:`analysis.expected_max.expected_max_table`'s. A family whose curve keeps
    rising at the right edge was still gaining from more trials; curves that cross mean the ranking
    of the families depends on the tuning budget. ``ax``: one Axes per batch size (a sequence), or
    one Axes for everything (batch sizes then differ by line style).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({int(b) for b in table["batch_size"]}) if len(table) else []
    if ax is None:
        count = max(len(sizes), 1)
        fig, axes = plt.subplots(1, count, figsize=(min(3.6 * count, 14.4), 3.6), layout="constrained", sharey=True,
                                 squeeze=False)
        axes = list(axes.ravel())
    else:
        axes = list(np.ravel(ax))
        fig = axes[0].figure
    if not sizes:
        _note(axes[0], "no trials")
        axes[0].set_title("Expected best of n trials")
        return fig
    shared = len(axes) < len(sizes)  # one Axes for every batch size: tell them apart by line style
    styles = ("-", "--", ":", "-.")
    for index, size in enumerate(sizes):
        panel = axes[0] if shared else axes[index]
        part = table[table["batch_size"] == size]
        for loss, curve in part.sort_values("n").groupby("loss", sort=True):
            colour, marker = _style(str(loss))
            label = f"{loss} (bs {size})" if shared else f"{loss} ({int(curve['n_trials'].iloc[0])} trials)"
            line = styles[index % len(styles)] if shared else "-"
            drawn = panel.plot(curve["n"], curve["expected"], color=colour, linestyle=line, marker=marker,
                               markersize=3, label=label)
            panel.fill_between(curve["n"], curve["low"], curve["high"], color=drawn[0].get_color(), alpha=0.15,
                               linewidth=0)
        if not shared:
            panel.set_title(f"batch size {size}")
            panel.set_xlabel("trials n")
            panel.legend(fontsize=7)
            panel.grid(alpha=0.3)
    if shared:
        axes[0].set_title("Expected best of n trials")
        axes[0].set_xlabel("trials n")
        axes[0].legend(fontsize=7, ncols=2)
        axes[0].grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for panel in axes[: 1 if shared else len(sizes)]:
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel(f"expected best {objective} (band: bootstrap)")
    return fig


def plot_paired_seeds(paired_diffs: pd.DataFrame, ax: Any = None, method: str = "t", ci: float = 0.95) -> Any:
    """Per family: each seed's difference to the baseline as a dot per batch size, with the mean and interval.

    ``paired_diffs`` is :func:`analysis.seed_stats.paired_differences`'s (loss, batch_size, seed,
    diff). Dots of one seed are joined by a faint line, so a subset on which a family wins at
    every batch size reads as one unit rather than several wins. The black bar is the mean over
    seeds of each seed's difference averaged over batch sizes, with its interval over seeds
    (:func:`analysis.seed_stats.interval`); none below the minimum number of seeds.
    """
    from .seed_stats import interval

    fig, ax = _axes(ax)
    if paired_diffs.empty:
        _note(ax, "no seed that a family and the baseline share")
        ax.set_title("Paired differences per seed")
        return fig
    import matplotlib

    families = sorted({str(v) for v in paired_diffs["loss"]})
    sizes = sorted({int(v) for v in paired_diffs["batch_size"]})
    cmap = matplotlib.colormaps["viridis"]
    colours = {s: cmap(i / max(len(sizes) - 1, 1)) for i, s in enumerate(sizes)}
    offsets = {s: (i - (len(sizes) - 1) / 2) * 0.5 / max(len(sizes), 1) for i, s in enumerate(sizes)}
    labels = []
    for x, loss in enumerate(families):
        part = paired_diffs[paired_diffs["loss"].astype(str) == loss]
        for _, one in part.groupby("seed"):
            one = one.sort_values("batch_size")
            xs = [x - 0.1 + offsets[int(b)] for b in one["batch_size"]]
            ax.plot(xs, one["diff"], color="#bbbbbb", linewidth=0.7, zorder=1)
            ax.scatter(xs, one["diff"], color=[colours[int(b)] for b in one["batch_size"]], s=18, zorder=2)
        result = interval(part.groupby("seed")["diff"].mean(), method=method, ci=ci)
        if np.isfinite(result["low"]):
            ax.errorbar([x + 0.3], [result["mean"]], yerr=[[result["mean"] - result["low"]],
                                                           [result["high"] - result["mean"]]],
                        color="black", marker="o", capsize=4, zorder=3)
        else:
            ax.scatter([x + 0.3], [result["mean"]], color="black", marker="o", zorder=3)
        labels.append(f"{loss}\n{result['n']} seeds" + ("" if np.isfinite(result["low"]) else " (no CI)"))
    for size in sizes:
        ax.scatter([], [], color=colours[size], s=18, label=f"bs {size}")
    ax.errorbar([], [], yerr=[], color="black", marker="o", capsize=4, label=f"mean over seeds ± {ci:.0%} CI")
    ax.axhline(0, color="#7f7f7f", linewidth=1)
    ax.set_xticks(range(len(families)), labels)
    ax.set_xlim(-0.6, len(families) - 0.4)
    ax.set_ylabel("family − baseline, same seed and batch size")
    ax.set_title("Paired differences per seed")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return fig
