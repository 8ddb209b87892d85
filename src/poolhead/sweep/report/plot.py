"""summary.png: heatmap for two axes, bars with std error bars for one, sorted horizontal bars for more."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from poolhead.sweep.report.table import fmt


def plot_summary(groups: pd.DataFrame, axes: list[str], monitor: str, mode: str, title: str, path: Path) -> Path:
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    higher = mode == "max"
    mean, std = groups[f"{monitor} mean"], groups[f"{monitor} std"]
    std = None if std.isna().all() else std.fillna(0)  # no error bars with a single seed
    colors = ["tab:orange" if b else "tab:blue" for b in groups["best"]]
    if len(axes) == 2:
        grid = groups.pivot_table(index=axes[0], columns=axes[1], values=f"{monitor} mean", dropna=False)
        spread = groups.pivot_table(index=axes[0], columns=axes[1], values=f"{monitor} std", dropna=False)
        fig = Figure(figsize=(2.2 + 1.6 * grid.shape[1], 1.8 + 0.8 * grid.shape[0]))
        ax = fig.subplots()
        image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis" if higher else "viridis_r", aspect="auto")
        fig.colorbar(image, ax=ax, label=f"{monitor} (mean)")
        ax.set_xticks(range(grid.shape[1]), [fmt(c) for c in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [fmt(r) for r in grid.index])
        ax.set_xlabel(axes[1])
        ax.set_ylabel(axes[0])
        low, high = np.nanmin(grid.to_numpy(dtype=float)), np.nanmax(grid.to_numpy(dtype=float))
        best = groups.loc[0]
        for i, row in enumerate(grid.index):
            for j, col in enumerate(grid.columns):
                value = grid.loc[row, col]
                if pd.isna(value):
                    continue
                text = f"{value:.3f}" + ("" if pd.isna(spread.loc[row, col]) else f"\n±{spread.loc[row, col]:.3f}")
                level = (value - low) / (high - low) if high > low else 0.0
                bright = (level if higher else 1 - level) > 0.6  # light cell: black text
                is_best = row == best[axes[0]] and col == best[axes[1]]
                ax.text(j, i, text, ha="center", va="center", color="black" if bright else "white",
                        fontweight="bold" if is_best else "normal")
    elif len(axes) == 1:
        fig = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(groups)), 4.0))
        ax = fig.subplots()
        bars = ax.bar([fmt(v) for v in groups[axes[0]]], mean, yerr=std, capsize=4, color=colors)
        ax.bar_label(bars, [f"{v:.3f}" for v in mean], padding=3, fontsize=8)
        ax.set_xlabel(axes[0])
        ax.set_ylabel(monitor)
        ax.tick_params(axis="x", labelrotation=30 if len(groups) > 6 else 0)
    else:
        order = groups.sort_values(f"{monitor} mean", ascending=True)
        fig = Figure(figsize=(8.0, 1.5 + 0.35 * len(order)))
        ax = fig.subplots()
        bars = ax.barh(order["config"], order[f"{monitor} mean"], xerr=None if std is None else std[order.index],
                       capsize=3, color=[colors[i] for i in order.index])
        ax.bar_label(bars, [f"{v:.3f}" for v in order[f"{monitor} mean"]], padding=3, fontsize=8)
        ax.set_xlabel(monitor)
        ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
