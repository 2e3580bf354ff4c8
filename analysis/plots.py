"""Figures (matplotlib, headless): each takes a DataFrame and an optional ``ax`` and returns the figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

FAMILY_STYLE = {"ce": ("#7f7f7f", "o"), "supcon": ("#1f77b4", "s"), "schane": ("#d62728", "^"),
                "clce": ("#2ca02c", "D")}
STATUS_COLOURS = {"completed": "#2ca02c", "pruned": "#ff7f0e", "diverged": "#d62728", "oom": "#9467bd",
                  "error": "#8c564b", "running": "#7f7f7f"}


def _axes(ax, size=(6.4, 4.0)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=size, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _style(loss: str):
    return FAMILY_STYLE.get(loss, (None, "o"))


def plot_batch_size(table: pd.DataFrame, ax=None, objective: str = "val_top1"):
    """Best (solid) and mean with its bootstrap CI (dashed, error bars) against batch size, per loss family.

    Cells where every trial failed are marked with an ✕ at the bottom of the axis.
    """
    fig, ax = _axes(ax)
    for loss, part in table.sort_values("batch_size").groupby("loss", sort=True):
        colour, marker = _style(loss)
        ok = part[np.isfinite(part["best"])]
        ax.plot(ok["batch_size"], ok["best"], marker=marker, color=colour, label=f"{loss} best")
        err = np.vstack([ok["mean"] - ok["ci_low"], ok["ci_high"] - ok["mean"]])
        ax.errorbar(ok["batch_size"], ok["mean"], yerr=err, color=colour, linestyle="--", alpha=0.6, capsize=3)
        failed = part[~np.isfinite(part["best"])]
        if len(failed):
            ax.scatter(failed["batch_size"], [0.02] * len(failed), transform=ax.get_xaxis_transform(), marker="x",
                       color=colour, s=60, label=f"{loss}: no usable trial")
    if len(table) and np.isfinite(table["best"]).any():
        ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (images; log2 scale)")
    ax.set_ylabel(f"{objective} (best: solid, mean ± 95% CI: dashed)")
    ax.set_title("Objective against batch size")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3)
    return fig


def plot_relative_to_ce(table: pd.DataFrame, ax=None):
    fig, ax = _axes(ax)
    finite = table[(table["loss"] != "ce") & np.isfinite(table["delta_best_vs_ce"])]
    for loss, part in finite.sort_values("batch_size").groupby("loss", sort=True):
        colour, marker = _style(loss)
        ax.plot(part["batch_size"], part["delta_best_vs_ce"], marker=marker, color=colour, label=loss)
    ax.axhline(0, color="#7f7f7f", linewidth=1)
    if ax.get_legend_handles_labels()[0]:
        ax.set_xscale("log", base=2)
    else:
        ax.text(0.5, 0.5, "no batch size with both CE and another family completed", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("batch size (log2 scale)")
    ax.set_ylabel("best objective minus CE's at the same batch size")
    ax.set_title("Gain over cross-entropy")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_importance(importance: pd.DataFrame, ax=None):
    fig, ax = _axes(ax)
    overall = importance[importance["scope"] == "all"].sort_values("importance")
    if overall.empty:
        ax.text(0.5, 0.5, "not enough completed trials", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.barh(overall["param"], overall["importance"], color="#1f77b4")
    ax.set_xlabel("importance (fANOVA, normalised)")
    ax.set_title("Parameter importance (all trials)")
    return fig


def plot_slice(frame: pd.DataFrame, param: str, ax=None):
    fig, ax = _axes(ax, size=(4.8, 3.4))
    for loss, part in frame.groupby("loss", sort=True):
        colour, marker = _style(loss)
        ax.scatter(part["value"], part["objective"], color=colour, marker=marker, label=loss, alpha=0.8)
    if param in ("lr", "tau") and len(frame) and (frame["value"] > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel("best objective")
    ax.set_title(f"Objective against {param}")
    if len(frame):
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def plot_budget(trials: pd.DataFrame, ax=None):
    """Epochs each trial ran, sorted, coloured by status: ASHA's savings at a glance."""
    fig, ax = _axes(ax)
    order = trials.sort_values(["epochs_run", "trial_id"], ascending=[False, True])
    colours = [STATUS_COLOURS.get(s, "#7f7f7f") for s in order["status"]]
    ax.bar(range(len(order)), order["epochs_run"], color=colours)
    for status, colour in STATUS_COLOURS.items():
        if (order["status"] == status).any():
            ax.bar([], [], color=colour, label=f"{status} ({int((order['status'] == status).sum())})")
    ax.set_xlabel("trial (sorted by epochs run)")
    ax.set_ylabel("epochs run")
    ax.set_title(f"Budget: {int(order['epochs_run'].sum())} epochs over {len(order)} trials")
    ax.legend(fontsize=8)
    return fig


def plot_learning_curves(epochs: pd.DataFrame, trials: pd.DataFrame, metric: str = "val_top1", ax=None):
    fig, ax = _axes(ax)
    info = trials.set_index("trial_id")
    for trial_id, part in epochs.sort_values("epoch").groupby("trial_id"):
        if trial_id not in info.index:
            continue
        loss, status = info.loc[trial_id, "config_loss"], info.loc[trial_id, "status"]
        colour, _ = _style(loss)
        ax.plot(part["epoch"], part[metric], color=colour, alpha=0.7, linestyle="-" if status == "completed" else ":")
    for loss in sorted(set(info["config_loss"])):
        ax.plot([], [], color=_style(loss)[0], label=loss)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves (dotted: stopped early)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
