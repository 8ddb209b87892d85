"""Statistics over the jobs: mean/std over seeds, the paired tests against the best row, and their correction."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

N_BOOTSTRAP = 1000


def group_over_seeds(ok: pd.DataFrame, axes: list[str], columns: list[str], monitor: str, mode: str) -> pd.DataFrame:
    """Mean/std (ddof=1) of every column per configuration, n = runs with the main metric; best first."""
    grouped = ok.groupby(axes, dropna=False, sort=True)
    table = grouped[columns].agg(["mean", "std"])
    table.columns = [f"{column} {stat}" for column, stat in table.columns]
    table.insert(0, "n", grouped[monitor].count())
    if "config" not in axes:  # the label column ("config" is the only axis when nothing varies)
        table.insert(0, "config", grouped["config"].first())
    table = table.reset_index().sort_values(f"{monitor} mean", ascending=mode == "min", na_position="last")
    table = table.reset_index(drop=True)
    table.insert(0, "best", table.index == 0)
    table[f"delta {monitor}"] = table[f"{monitor} mean"] - table.loc[0, f"{monitor} mean"]
    return table


def paired_ttest(ok: pd.DataFrame, best: str, other: str, monitor: str, seed: str, mode: str) -> float:
    """One-sided paired t-test, H1: config `best` beats config `other` on `monitor`.
    Runs are paired by their seed value; a seed that only one side has is dropped. NaN with fewer than 2 pairs."""
    per_seed = ok[ok["config"].isin([best, other])].pivot_table(index=seed, columns="config", values=monitor)
    pairs = per_seed.reindex(columns=[best, other]).dropna()
    if len(pairs) < 2:
        return math.nan
    with warnings.catch_warnings():  # near-constant differences: scipy warns about precision, p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        alternative = "less" if mode == "min" else "greater"
        return float(stats.ttest_rel(pairs[best], pairs[other], alternative=alternative).pvalue)


def correct(p_values: pd.Series) -> pd.Series:
    """Benjamini-Hochberg adjusted p-values (`scipy.stats.false_discovery_control`); NaN stays NaN, untested."""
    valid = p_values.dropna()
    adjusted = pd.Series(math.nan, index=p_values.index)
    if len(valid):
        adjusted[valid.index] = stats.false_discovery_control(valid.to_numpy(dtype=float))
    return adjusted


def paired_bootstrap(best_dir: Path, other_dir: Path, n: int = N_BOOTSTRAP, seed: int = 0) -> tuple[float, str, str]:
    """Fraction of row resamples where the score of `best_dir`'s predictions <= that of `other_dir`'s.
    Spearman for numeric gold/pred, accuracy for classes (`pred_id`), on the val (dev) rows: those the
    ranking and the best row come from (test rows would judge the choice on the data kept to report it).
    Returns (p, split, score); p is NaN when a predictions.csv is missing or the jobs share fewer than 3
    rows."""
    frames = [pd.read_csv(d / "predictions.csv") for d in (best_dir, other_dir) if (d / "predictions.csv").exists()]
    if len(frames) < 2:
        return math.nan, "", ""
    split = "val"
    best, other = (frame[frame["split"] == split] for frame in frames)
    rows = best.merge(other, on="index", suffixes=("_b", "_o"))
    columns = ["gold_b", "pred_b", "pred_o"]
    numeric = "pred_id_b" not in rows and all(pd.api.types.is_numeric_dtype(rows[c]) for c in columns)
    rows = rows.dropna(subset=columns)
    if len(rows) < 3:
        return math.nan, split, ""
    idx = np.random.default_rng(seed).integers(0, len(rows), size=(n, len(rows)))
    gold = rows["gold_b"].to_numpy()[idx]
    scores = []
    for pred in (rows["pred_b"].to_numpy()[idx], rows["pred_o"].to_numpy()[idx]):
        if not numeric:
            scores.append((gold == pred).mean(axis=1))
            continue
        with warnings.catch_warnings():  # a resample with constant gold or pred: NaN, dropped below
            warnings.simplefilter("ignore")
            scores.append(stats.pearsonr(stats.rankdata(gold, axis=1), stats.rankdata(pred, axis=1), axis=1).statistic)
    diff = scores[0] - scores[1]
    diff = diff[~np.isnan(diff)]
    return (float(np.mean(diff <= 0)) if len(diff) else math.nan), split, "Spearman" if numeric else "accuracy"


def compare_with_best(groups: pd.DataFrame, ok: pd.DataFrame, monitor: str, mode: str, seed: str | None,
                      dirs: dict[str, Path]) -> str:
    """Set `p_value` (best row vs each other row: paired t-test over seeds, or with one seed the paired bootstrap
    over the predictions in `dirs[config]`) and `p_corrected` in groups; return how, in words for summary.md."""
    best = groups.loc[0, "config"]
    others = groups.loc[1:, "config"]
    if seed is not None and groups["n"].max() >= 2:
        groups["p_value"] = [math.nan] + [paired_ttest(ok, best, c, monitor, seed, mode) for c in others]
        how = (f"one-sided paired t-test (`scipy.stats.ttest_rel`, runs paired by `{seed}` value, seeds one side "
               f"lacks dropped), H1: the best has a {'higher' if mode == 'max' else 'lower'} `{monitor}` than the row")
    else:
        results = [paired_bootstrap(dirs[best], dirs[c]) for c in others]
        groups["p_value"] = [math.nan] + [p for p, _, _ in results]
        split, score = next(((s, sc) for _, s, sc in results if sc), ("val", "Spearman"))
        how = (f"one seed, so a paired bootstrap over the {split} predictions (predictions.csv), {N_BOOTSTRAP} "
               f"resamples of rows, p = fraction where {score}(best) ≤ {score}(row)"
               + (" (class labels: accuracy, not Spearman)" if score == "accuracy" else ""))
    groups["p_corrected"] = correct(groups["p_value"])
    return how + (f"; Benjamini-Hochberg corrected over the {groups['p_value'].notna().sum()} comparisons "
                  "(`scipy.stats.false_discovery_control`); — where there is nothing to pair.")
