"""Read the jobs of a Hydra multirun folder: results.json, display number, overrides, and which overrides vary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

# Reader of old records: results.json from before `monitor_mode` was recorded (November 2026) gets its direction
# guessed from the metric's name; delete when no such sweep is kept (every committed study record has the field).
GUESS_MIN = ("loss", "mse", "mae", "rmse", "error")


def parse_overrides(lines: list[str]) -> dict[str, Any]:
    """`["pooling=mean", "+optim.lr=3e-5"]` -> `{"pooling": "mean", "optim.lr": 3e-05}`, parsed as Hydra does."""
    from poolhead.run.record import NOT_IDENTITY

    parsed = OverridesParser.create().parse_overrides([str(line) for line in lines])
    # lists and dicts become strings so that jobs can be grouped by them; how a job was started (a rung's
    # stop_at_step, resume, ...) is not what it is
    return {o.key_or_group: str(v) if isinstance(v := o.value(), (list, dict)) else v
            for o in parsed if not o.is_delete() and o.key_or_group not in NOT_IDENTITY}


def _job_num(job_dir: Path) -> int | str:
    hydra_yaml = job_dir / ".hydra" / "hydra.yaml"
    hydra = (yaml.safe_load(hydra_yaml.read_text()) or {}).get("hydra") if hydra_yaml.exists() else None
    num = ((hydra or {}).get("job") or {}).get("num")  # plain YAML: a run folder's text is never resolved
    if isinstance(num, int):
        return num
    return int(job_dir.name) if job_dir.name.isdigit() else job_dir.name


def load_jobs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every job folder (a subfolder holding results.json or .hydra/), sorted by job number: its results.json plus
    `job`, `dir` and `overrides` (key -> value). No results.json: status "missing"; an unreadable one: "failed".
    A halving sweep's folder lists its design's jobs (halving.json "jobs"); another design's are left out."""
    jobs, members = [], design_jobs(Path(sweep_dir))
    for job_dir in Path(sweep_dir).iterdir():
        results = job_dir / "results.json"
        if not job_dir.is_dir() or not (results.exists() or (job_dir / ".hydra").is_dir()):
            continue
        if members is not None and job_dir.name not in members:
            continue
        content: dict[str, Any] = {"status": "missing"}
        if results.exists():
            try:
                content = json.loads(results.read_text())
            except (OSError, ValueError) as err:
                content = {"status": "failed", "error": f"unreadable results.json: {err}"}
        overrides_yaml = job_dir / ".hydra" / "overrides.yaml"
        lines = (yaml.safe_load(overrides_yaml.read_text()) if overrides_yaml.exists()
                 else (content.get("config") or {}).get("overrides"))
        jobs.append({**content, "job": _job_num(job_dir), "dir": job_dir, "overrides": parse_overrides(lines or [])})
    return sorted(jobs, key=lambda job: (isinstance(job["job"], str), job["job"]))


def design_jobs(sweep_dir: Path) -> set[str] | None:
    """The job folders of a halving sweep's current design (halving.json "jobs"); None: every job counts."""
    try:
        jobs = json.loads((sweep_dir / "halving.json").read_text()).get("jobs")
    except (OSError, ValueError, AttributeError):
        return None
    return set(jobs) if jobs else None


def is_seed(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "seed"


def varied_keys(jobs: list[dict]) -> list[str]:
    """The override keys whose value differs between jobs (the sweep's axes), seed last."""
    keys = list(dict.fromkeys(key for job in jobs for key in job["overrides"]))
    varied = [k for k in keys if len({repr(job["overrides"].get(k)) for job in jobs}) > 1]
    return sorted(varied, key=is_seed)


def main_metric(jobs: list[dict], metrics: list[str]) -> tuple[str | None, str, bool]:
    """(monitor, "min" | "max", guessed): from the ok jobs' results.json; the mode is guessed from the metric's
    name only when results.json predates `monitor_mode`."""
    ok = [job for job in jobs if job.get("status") == "ok" and job.get("monitor") in metrics]
    monitor = ok[0]["monitor"] if ok else ("val/spearman" if "val/spearman" in metrics else None)
    mode = ok[0].get("monitor_mode") if ok else None
    if mode in ("min", "max"):
        return monitor, mode, False
    lower = monitor is not None and any(word in monitor.rsplit("/", 1)[-1].lower() for word in GUESS_MIN)
    return monitor, "min" if lower else "max", True
