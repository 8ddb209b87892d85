"""Collect the STS-B study's two sweeps into this folder: reports, the comparisons the README answers from, a figure.

    python experiments/stsb_pooling/analyze.py [--finetune DIR] [--probe DIR] [--head-lr DIR] [--prune-checkpoints]
                                               [--pauses FILE]

Reads the sweep folders that `python train.py -m experiment=stsb_pooling` and `experiment=stsb_probe` write
(default: experiments/stsb_pooling/runs/finetune and runs/probe,
where each job's records are committed and its checkpoints are not), runs poolhead's sweep report on each and copies it
here (finetune/, probe/), and writes:
- comparisons.csv/.md: each question of the study as seed-paired two-sided t-tests (scipy.stats.ttest_rel), with
  Benjamini-Hochberg correction over all comparisons of one sweep, and a paired bootstrap over the dev rows of one
  seed (poolhead.sweep.report.stats.paired_bootstrap); the README's claims point at these rows.
- study.png: dev Spearman per pooling, cross and bi side by side, fine-tuned and frozen, each seed a dot.
- status.md: jobs done per sweep (a partial sweep is labelled so), summed job wall time, git commits, best config,
  and per mode the best model with the command that exports it (from this machine's best.ckpt, or by retraining it).
--prune-checkpoints (only once the fine-tune sweep is complete): delete best.ckpt of every fine-tune job except the
best job of the best configuration per mode; predictions.csv of every job stays.
Written by hand (not poolhead.sweep.report) because these tests pair two chosen configurations, where the sweep report
compares every row with the best one.
"""

from __future__ import annotations

import argparse
import itertools
import math
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from poolhead.sweep.report import load_jobs, write_report
from poolhead.sweep.report.stats import correct, paired_bootstrap
from poolhead.sweep.report.table import markdown_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
POOLINGS = ["pooler", "cls", "mean", "max", "mean_sqrt_len", "weighted_mean", "attention"]
GRID = {"mode": ["cross", "bi"], "head": ["regression", "classification"], "pooling": POOLINGS}
EXPECTED = {"finetune": 84, "probe": 84, "head_lr": 7}  # the probe runs the same 84-job grid (the issue said 42)
METRIC = "val/spearman"


def comparisons(jobs: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """Seed-paired t-tests of the study's questions; `a` and `b` differ in one axis, the others are held fixed.
    Row ids (f12, p3: sweep initial + place in the full grid's list) are what the README cites."""
    questions = [("pooling", "pooler", "cls"), ("pooling", "cls", "mean"), ("pooling", "cls", "max"),
                 ("pooling", "mean", "max"), ("head", "regression", "classification"), ("mode", "cross", "bi")]
    rows, number = [], 0
    for axis, a, b in questions:
        fixed_axes = [x for x in ("mode", "head", "pooling") if x != axis]
        for fixed in itertools.product(*(GRID[x] for x in fixed_axes)):
            number += 1  # over the whole grid, so that a row keeps its id while a partial sweep fills in
            where = (jobs[fixed_axes] == pd.Series(fixed, index=fixed_axes)).all(axis=1)
            side = {v: jobs[where & (jobs[axis] == v)].set_index("seed")[METRIC] for v in (a, b)}
            pairs = pd.concat(side, axis=1).dropna()
            if pairs.empty:
                continue
            p = math.nan
            if len(pairs) >= 2 and (pairs[a] - pairs[b]).std() > 0:
                p = float(stats.ttest_rel(pairs[a], pairs[b]).pvalue)
            seed = pairs.index.min()  # and on the dev rows of one seed's pair: the only test where seeds agree
            dirs = [Path(jobs[where & (jobs[axis] == v) & (jobs["seed"] == seed)]["dir"].iloc[0]) for v in (a, b)]
            rows.append({"id": f"{sweep[0]}{number}", "sweep": sweep, "question": f"{a} vs {b}", "fixed": " ".join(
                f"{x}={v}" for x, v in zip(fixed_axes, fixed, strict=True)), "a": a, "b": b, "n_seeds": len(pairs),
                "mean_a": pairs[a].mean(), "mean_b": pairs[b].mean(), "delta_a_minus_b": (pairs[a] - pairs[b]).mean(),
                "p": p, "p_bootstrap_rows": bootstrap_p(*dirs)})
    return with_corrections(pd.DataFrame(rows))


def bootstrap_p(dir_a: Path, dir_b: Path) -> float:
    """Two-sided paired bootstrap p over the dev rows of two jobs' predictions (NaN unless both are scores)."""
    p_rows, _, score = paired_bootstrap(dir_a, dir_b)
    return 2 * min(p_rows, 1 - p_rows) if score == "Spearman" else math.nan


def with_corrections(frame: pd.DataFrame) -> pd.DataFrame:
    """Benjamini-Hochberg over one table's rows: p_bh beside p, p_bootstrap_bh at the end."""
    if not frame.empty:
        frame.insert(frame.columns.get_loc("p") + 1, "p_bh", correct(frame["p"]))
        frame["p_bootstrap_bh"] = correct(frame["p_bootstrap_rows"])
    return frame


def head_lr_comparisons(finetune: pd.DataFrame, check: pd.DataFrame) -> pd.DataFrame:
    """The head_lr check (experiment=stsb_head_lr: bi, classification, seed 1, head at 1e-3) per pooling, paired
    bootstrap over the dev rows: against the same job of the fine-tune grid (head at 3e-5; rows h1-h7), and against
    the grid's bi regression (cosine) job of that pooling and seed (rows h8-h14)."""
    def job(jobs: pd.DataFrame, head: str, pooling: str) -> pd.DataFrame:
        return jobs[(jobs["mode"] == "bi") & (jobs["head"] == head) & (jobs["pooling"] == pooling)
                    & (jobs["seed"] == 1)]

    # (question, the check's name, the grid job's name and head, what the pair holds fixed besides pooling and seed)
    against = [("head_lr 1e-3 vs 3e-5", "1e-3", "3e-5", "classification", "mode=bi head=classification"),
               ("classification (head_lr 1e-3) vs regression", "classification", "regression", "regression", "mode=bi")]
    rows = []
    for offset, (question, a_name, b_name, b_head, fixed) in zip((0, len(POOLINGS)), against, strict=True):
        for number, pooling in enumerate(POOLINGS, 1 + offset):
            pair = [job(check, "classification", pooling), job(finetune, b_head, pooling)]
            if any(side.empty for side in pair):
                continue
            a, b = (float(side[METRIC].iloc[0]) for side in pair)
            rows.append({"id": f"h{number}", "sweep": "head_lr", "question": question,
                         "fixed": f"{fixed} pooling={pooling} seed=1", "a": a_name, "b": b_name, "n_seeds": 1,
                         "mean_a": a, "mean_b": b, "delta_a_minus_b": a - b, "p": math.nan,
                         "p_bootstrap_rows": bootstrap_p(*(Path(side["dir"].iloc[0]) for side in pair))})
    return with_corrections(pd.DataFrame(rows))


def figure(done: dict[str, pd.DataFrame], path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(13, 7.5))
    axes = fig.subplots(2, 2, sharey=True)
    x = np.arange(len(POOLINGS))
    style = {"finetune": ("fine-tuned", "tab:blue"), "head_lr": ("fine-tuned, head at lr 1e-3", "tab:orange"),
             "probe": ("frozen (probe)", "tab:gray")}
    legend = {}
    for (i, head), (j, mode) in itertools.product(enumerate(["regression", "classification"]),
                                                  enumerate(["cross", "bi"])):
        ax = axes[i][j]
        cells = {sweep: jobs[(jobs["head"] == head) & (jobs["mode"] == mode)] for sweep, jobs in done.items()}
        cells = {sweep: cell for sweep, cell in cells.items() if not cell.empty}
        width = 0.76 / max(len(cells), 1)  # the bars of a pooling share 0.76 of its slot
        for place, (sweep, cell) in enumerate(cells.items()):
            name, colour = style[sweep]
            shift = (place - (len(cells) - 1) / 2) * width
            per = cell.groupby("pooling")[METRIC]
            means = per.mean().reindex(POOLINGS)
            zero_shot = cell.groupby("pooling")["zero_shot"].all().reindex(POOLINGS, fill_value=False)
            bars = ax.bar(x + shift, means, width=width, color=colour, alpha=0.55, label=f"{name}: mean over seeds",
                          hatch=["//" if z else "" for z in zero_shot])
            legend.setdefault(f"{name}: mean over seeds", bars)
            ax.bar_label(bars, [f"{v:.2f}" if v == v else "" for v in means], fontsize=7 if len(cells) < 3 else 6,
                         padding=2)
            for k, pooling in enumerate(POOLINGS):
                values = cell[cell["pooling"] == pooling][METRIC]
                ax.scatter(np.full(len(values), k + shift), values, color=colour, s=12, zorder=3)
        ax.set_title(f"mode={mode}, head={head}")
        ax.set_xticks(x, POOLINGS, rotation=25, fontsize=8)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
        if j == 0:
            ax.set_ylabel("STS-B dev Spearman")
    labels, handles = list(legend), list(legend.values())
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//"))
    labels.append("zero-shot (frozen, nothing to train)")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=4, fontsize=8, frameon=False)
    counts = ", ".join(f"{style[s][0]} {len(d)}/{EXPECTED[s]} jobs" for s, d in done.items())
    fig.suptitle(f"MiniLM on STS-B: dev Spearman per pooling (dots: seeds; {counts})")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=110)


def job_span(job_dir: Path, record: dict) -> tuple[float, float, bool, bool]:
    """From a job's folder and its results.json content (`record`): (start, end) in epoch seconds of the job's last
    process; whether an earlier, interrupted process came before
    (its time is not counted: where it stopped is not recorded); whether the span is read from train.log. From
    results.json's `started`/`finished`; for records older than those fields, train.log's last "Seed set to" line
    and its last line after it not from the sweep's job module (a later rerun of the sweep logs "Skipped" there);
    short by the best checkpoint's scoring, which logs nothing: ~7 s a fine-tune job, ~9 s a probe job on the Intel
    Xeon. Never file times: a git checkout rewrites them, and Hydra rewrites .hydra/ every time the sweep runs again."""
    lines = (job_dir / "train.log").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if "Seed set to" in line]
    if record.get("started") and record.get("finished"):
        return (datetime.fromisoformat(record["started"]).timestamp(),
                datetime.fromisoformat(record["finished"]).timestamp(), len(starts) > 1, False)
    stamped = [line[1:24] for line in lines[starts[-1]:] if line.startswith("[20") and not _skip_line(line)]
    start, end = (datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=timezone.utc).timestamp()
                  for t in (stamped[0], stamped[-1]))
    return start, end, len(starts) > 1, True


def _skip_line(line: str) -> bool:
    """A log line of the sweep's job module (`poolhead.sweep` in the committed logs, `poolhead.sweep.jobs` since)."""
    return "[poolhead.sweep]" in line or "[poolhead.sweep.jobs]" in line


def busy_seconds(spans: list[tuple[float, float]], pauses: list[tuple[float, float]]) -> float:
    """Seconds inside at least one span and outside every pause: the sweep's wall time, however many jobs ran at
    once and however many sessions it took."""
    cuts = sorted({t for span in spans + pauses for t in span})
    return sum(b - a for a, b in itertools.pairwise(cuts)
               if any(s <= a and b <= e for s, e in spans) and not any(s <= a and b <= e for s, e in pauses))


def read_pauses(path: Path | None) -> list[tuple[float, float]]:
    """(stop, continue) epoch seconds from lines `stop ISO EPOCH ...` / `cont ISO EPOCH ...`."""
    if path is None:
        return []
    events = [line.split()[:3] for line in path.read_text().splitlines() if line.strip()]
    stops = [float(e[2]) for e in events if e[0] == "stop"]
    conts = [float(e[2]) for e in events if e[0] == "cont"]
    if len(stops) != len(conts) or any(b < a for a, b in zip(stops, conts, strict=True)):
        raise SystemExit(f"{path}: every `stop` line needs a later `cont` line")
    return list(zip(stops, conts, strict=True))


def best_per_mode(jobs: pd.DataFrame) -> dict[str, pd.Series]:
    """Per mode, the best seed's job of the best configuration (head, pooling) by mean dev Spearman over seeds."""
    best = {}
    for mode, cell in jobs.groupby("mode"):
        head, pooling = cell.groupby(["head", "pooling"])[METRIC].mean().idxmax()
        chosen = cell[(cell["head"] == head) & (cell["pooling"] == pooling)]
        best[mode] = chosen.loc[chosen[METRIC].idxmax()]
    return best


def export_commands(jobs: pd.DataFrame) -> list[str]:
    """How to get each mode's best model into models/<mode>: from this machine's best.ckpt where it still exists,
    else by training that one job again (checkpoints are not committed; on another CPU, rounding differences grow over
    training, so the retrained model's dev Spearman is close to, not equal to, the recorded one)."""
    lines = ["", "## Best model per mode (fine-tune, best mean over seeds, then its best seed)", ""]
    for mode, job in best_per_mode(jobs).items():
        setting = f"mode={mode} head={job['head']} pooling={job['pooling']} seed={int(job['seed'])}"
        checkpoint = Path(job["best_checkpoint"]) if isinstance(job["best_checkpoint"], str) else None
        run = f"experiments/stsb_pooling/best/{mode}"
        export = f"poolhead export {{}} --to experiments/stsb_pooling/models/{mode}"
        lines.append(f"- {mode}: {setting}, dev Spearman {job[METRIC]:.4f}")
        if checkpoint is not None and checkpoint.exists():
            lines.append(f"  - its best.ckpt is on this machine: `{export.format(_relative(checkpoint))}`")
        lines.append(f"  - from a clean checkout: `python train.py experiment=stsb_pooling {setting} "
                     f"hydra.run.dir={run} && {export.format(run)}`")
    return lines


def _relative(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def own_checkpoint(job: dict) -> str | None:
    """The job's best.ckpt in this checkout: results.json records the absolute path of the checkout that trained it,
    which in another clone names someone else's file (and --prune-checkpoints would delete it)."""
    recorded = (job.get("checkpoints") or {}).get("best")
    return str(Path(job["dir"]) / "checkpoints" / Path(recorded).name) if recorded else None


def prune(jobs: pd.DataFrame) -> list[Path]:
    """Delete every best.ckpt but the best configuration's per mode; returns the kept paths (present or not)."""
    keep = {Path(job["best_checkpoint"]) for job in best_per_mode(jobs).values()}
    for checkpoint in jobs["best_checkpoint"].dropna():
        if Path(checkpoint) not in keep and Path(checkpoint).exists():
            Path(checkpoint).unlink()
    return sorted(keep)


def kept_line(kept: list[Path]) -> str:
    present = [str(_relative(path)) for path in kept if path.exists()]
    absent = [str(_relative(path)) for path in kept if not path.exists()]
    return (f"- kept best.ckpt (best configuration per mode): {', '.join(present) or 'none'}"
            + (f"; not on this machine (trained in an earlier environment; the retrain command below recreates it): "
               f"{', '.join(absent)}" if absent else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--finetune", type=Path, default=ROOT / "experiments/stsb_pooling/runs/finetune")
    parser.add_argument("--probe", type=Path, default=ROOT / "experiments/stsb_pooling/runs/probe")
    parser.add_argument("--head-lr", type=Path, default=ROOT / "experiments/stsb_pooling/runs/head_lr")
    parser.add_argument("--prune-checkpoints", action="store_true")
    parser.add_argument("--pauses", type=Path, default=HERE / "pauses.txt",
                        help="times the sweep was paused (SIGSTOP), not counted as job time; copied to the committed "
                             "pauses.txt, which is the default (so a clean checkout's status.md has the same times)")
    args = parser.parse_args()
    pauses = read_pauses(args.pauses if args.pauses.exists() else None)
    if args.pauses.exists() and args.pauses.resolve() != (HERE / "pauses.txt").resolve():
        shutil.copy(args.pauses, HERE / "pauses.txt")

    done, frames, status, best_lines = {}, [], ["# Study status (written by analyze.py)", ""], []
    for sweep, sweep_dir in (("finetune", args.finetune), ("probe", args.probe), ("head_lr", args.head_lr)):
        if not sweep_dir.is_dir():
            status.append(f"- {sweep}: not run yet ({sweep_dir} does not exist)")
            continue
        report = write_report(sweep_dir)
        (HERE / sweep).mkdir(exist_ok=True)
        for key in ("summary_md", "summary_csv", "summary_png", "groups_csv"):
            if report[key] is not None:
                shutil.copy(report[key], HERE / sweep / Path(report[key]).name)
        jobs = load_jobs(sweep_dir)
        recorded = [job for job in jobs if (job["dir"] / "results.json").exists()]
        summary = pd.DataFrame([{**{axis: (job.get("config") or job["overrides"]).get(axis)
                                    for axis in ("mode", "head", "pooling", "seed")},
                                 "status": job["status"], METRIC: job.get("metrics", {}).get(METRIC),
                                 "best_checkpoint": own_checkpoint(job), "dir": job["dir"],
                                 "zero_shot": bool(job.get("zero_shot"))}
                                for job in jobs])
        ok = summary[summary["status"] == "ok"].copy()
        done[sweep] = ok
        frames.append(head_lr_comparisons(done.get("finetune", ok[:0]), ok) if sweep == "head_lr"
                      else comparisons(ok, sweep))
        spans = [job_span(job["dir"], job) for job in recorded]
        resumed = sum(was_resumed for _, _, was_resumed, _ in spans)
        from_log = sum(logged for *_, logged in spans)
        job_seconds = sum(busy_seconds([(a, b)], pauses) for a, b, *_ in spans)
        commits = sorted({job["env"]["git"] for job in recorded if "env" in job})
        label = "complete" if len(ok) == EXPECTED[sweep] else "PARTIAL"
        failed = summary[summary["status"] != "ok"]
        status.append(f"- {sweep}: **{label}**, {len(ok)} of {EXPECTED[sweep]} jobs ok, {len(failed)} not ok "
                      f"({', '.join(failed['status'].astype(str)) or 'none'}); wall time "
                      f"{busy_seconds([(a, b) for a, b, *_ in spans], pauses) / 3600:.2f} h while at least one job "
                      f"ran, {job_seconds / 3600:.2f} h summed over jobs (each from the start of its last process "
                      f"to its results.json, less pauses"
                      + (f"; {resumed} job(s) resumed after an interruption count only their last process" if resumed
                         else "")
                      + (f"; {from_log} job(s) recorded before results.json kept start and end times are timed "
                         f"from train.log, a few seconds short each" if from_log else "")
                      + f"); git {', '.join(commits)}; best: {report['best']}")
        if sweep == "finetune" and args.prune_checkpoints:
            if len(ok) != EXPECTED[sweep]:
                parser.error(f"--prune-checkpoints: the fine-tune sweep has {len(ok)} of {EXPECTED[sweep]} jobs ok")
            status.append(kept_line(prune(ok)))
        if sweep == "finetune" and not ok.empty:
            best_lines = export_commands(ok)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    status.append(f"- machine of this analysis: {model}, {len(__import__('os').sched_getaffinity(0))} cores")
    status += best_lines
    (HERE / "status.md").write_text("\n".join(status) + "\n")
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not table.empty:
        table.to_csv(HERE / "comparisons.csv", index=False, float_format="%.4f")
        shown = table.assign(**{c: table[c].map(lambda v: f"{v:.4f}") for c in
                                ("mean_a", "mean_b", "delta_a_minus_b", "p", "p_bh", "p_bootstrap_rows",
                                 "p_bootstrap_bh")})
        (HERE / "comparisons.md").write_text(
            "# Paired comparisons\n\np: two-sided t-test over seed-matched pairs (NaN with fewer than 2 seeds, or "
            "when the difference is the same for every seed, as between two zero-shot rows); p_bh: Benjamini-Hochberg "
            "over all comparisons of a sweep; p_bootstrap_rows: two-sided paired bootstrap over the 1,500 dev pairs "
            "(1,000 resamples; 0.0000 = in none of them) of the lowest common seed's two jobs, Spearman "
            "(NaN across heads, whose predictions differ in kind); p_bootstrap_bh: those corrected the same way. "
            "Rows h1-h7: the head_lr check against the fine-tune grid's same job; h8-h14: against the grid's bi "
            "regression (cosine) job of the same pooling and seed (one seed: bootstrap only).\n\n"
            + markdown_table(shown) + "\n")
    if done:
        figure({sweep: done[sweep] for sweep in ("finetune", "head_lr", "probe") if sweep in done}, HERE / "study.png")
    print((HERE / "status.md").read_text())


if __name__ == "__main__":
    main()
