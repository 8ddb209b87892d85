"""Sweeps that can be run again: the skip/resume decision per job, claims, a GPU per parallel job, exit status.
A job folder is named by its overrides (`job_dirname`), not its place in the grid, so a reordered or grown grid
finds its finished jobs."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from poolhead.core.direction import monitor_mode
from poolhead.run.claim import (  # noqa: F401 - claimed_elsewhere, release_job: sweepers import them here
    claim_job,
    claim_run,
    claimed_elsewhere,
    release_job,
    set_aside,
    unreadable_checkpoint,
)
from poolhead.run.record import (
    CLAIM_FILE,
    JOB_FILE,
    SUPERSEDED,
    atomic_write,
    config_hash,
    identity,
    portable,
    read_json,
)

log = logging.getLogger(__name__)
KEEP_IN_PLACE = (".hydra", "train.log", JOB_FILE, SUPERSEDED, CLAIM_FILE)  # what a job's retraining never moves aside
MAX_DIRNAME = 200  # file systems allow 255 bytes a name


_claimed_gpu: list[Any] = []  # the lock file this process holds while it keeps its GPU


def job_dirname(override_dirname: str) -> str:
    """`${hydra.job.override_dirname}` (sorted `key=value` pairs) as a folder name: characters other than letters,
    digits and `_.,=+-` become `_`, and when anything was replaced or the name is longer than MAX_DIRNAME it is cut and
    a hash of the full overrides appended, so two jobs never share a folder."""
    name = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", override_dirname)
    if name != override_dirname or len(name) > MAX_DIRNAME:
        name = f"{name[:MAX_DIRNAME - 9]}-{hashlib.sha256(override_dirname.encode()).hexdigest()[:8]}"
    return name or "no_overrides"


def optuna_direction(monitor: str | None) -> str:
    """`maximize` or `minimize` for a monitored metric (the Optuna sweeper needs it before the first job builds the
    model that knows it; tests check this against every metric's own `higher_is_better`)."""
    if not monitor:
        raise ValueError("an Optuna study needs `monitor` set (e.g. monitor=val/spearman) to know its direction")
    return {"min": "minimize", "max": "maximize"}[monitor_mode(monitor)]


class Prepared(NamedTuple):
    """`prepare_job`'s answer: the results to return without running (a finished or claimed job), or the
    checkpoint the run resumes from (None: from scratch)."""

    results: dict[str, Any] | None = None
    resume_from: str | None = None


def prepare_job(cfg: DictConfig) -> Prepared:
    """A job about to run, claimed first (`claim_job`; a single run was claimed, and an earlier run's outputs
    moved aside, before Hydra wrote its `.hydra/`: `run.claim.ClaimCallback`). A multirun job skips a folder
    claimed elsewhere, returns the results of the same config when `ok`, else the checkpoint to resume from
    (its own last.ckpt of this config; another config's outputs are moved aside), and claims a free GPU when
    jobs run in parallel."""
    if not HydraConfig.initialized():
        return Prepared()
    out_dir = Path(cfg.paths.output_dir)
    if HydraConfig.get().mode != RunMode.MULTIRUN:  # claimed by ClaimCallback already, before .hydra/
        resuming = bool(cfg.get("ckpt_path")) or not read_json(out_dir / "results.json")
        why = claim_run(out_dir, resuming, KEEP_IN_PLACE)
        return Prepared() if why is None else Prepared({"status": "failed", "resumable": False, "error": why})
    holder = claim_job(out_dir)
    if holder is not None:
        log.info("Skipped: %s is claimed by another process (%s), which trains it", out_dir, holder)
        return Prepared({"status": "claimed", "error": f"claimed by another process ({holder})", "metrics": {},
                         "monitor": None})
    digest, config = config_hash(cfg), identity(cfg)
    job = read_json(out_dir / JOB_FILE)  # the identity() of the config that last trained here, and its hash
    if cfg.get("resume", True):
        done = read_json(out_dir / "results.json")  # its "config" is the full one, so compare job.json's
        if done.get("status") == "ok" and _same_config({**done, "config": job.get("config")}, digest, config):
            log.info("Skipped: %s already holds results of this config (%s); resume=false retrains", out_dir,
                     done.get("config_hash"))
            return Prepared(done)
        rung = done.get("rung") or {}
        if done.get("status") == "paused" and cfg.get("stop_at_step") and rung.get("step", -1) >= cfg.stop_at_step \
                and _same_config({**done, "config": job.get("config")}, digest, config):
            log.info("Skipped: %s already trained to step %d (stop_at_step=%d)", out_dir, rung["step"],
                     cfg.stop_at_step)
            return Prepared(done)
    last, resume_from = out_dir / "checkpoints" / "last.ckpt", None
    own = cfg.get("resume", True) and _same_config(job, digest, config)
    damage = unreadable_checkpoint(last) if own and last.exists() else None
    if damage:  # kept, not deleted; nothing else of the job can be continued without it
        _set_aside(out_dir, config, f"its {last.name} is unreadable ({damage})")
    elif own and last.exists():
        log.info("Resuming %s from its own %s", out_dir, last)
        resume_from = str(last)
    elif not own:
        _set_aside(out_dir, config, "resume=false" if not cfg.get("resume", True) else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / JOB_FILE, json.dumps({"config_hash": digest, "config": config}) + "\n")
    _claim_gpu_if_parallel(cfg)
    return Prepared(resume_from=resume_from)










def _same_config(record: dict[str, Any], digest: str, config: dict[str, Any]) -> bool:
    """The record (a config_hash and the identity() it hashed) is of this config: the same hash, or the only
    differences are keys the record's config did not have yet. Those were added to poolhead after the job ran and are
    taken to be at their defaults, so a new option does not retrain a finished study (tests/test_sweep.py)."""
    if record.get("config_hash") == digest:
        return True
    before = portable(record.get("config"))
    if not before or not _only_added(before, config):
        return False
    log.info("%s: keys added since this job ran, taken at their defaults: %s", record.get("config_hash"),
             "; ".join(_changed_keys(before, config)))
    return True


def _only_added(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Every key of `before` is in `after` with the same value (dicts compared key by key); `after` may have more."""
    return all(key in after and (_only_added(old, after[key]) if isinstance(old, dict) and isinstance(after[key], dict)
                                 else old == after[key]) for key, old in before.items())


def _set_aside(out_dir: Path, config: dict[str, Any], reason: str | None) -> None:
    """A job about to train from scratch over outputs of another config (an edited yaml, a new default) or with
    resume=false: its checkpoints, results, predictions and logs move to `superseded/<time>/`, never deleted, and
    the log names the keys that changed. Hydra's own `.hydra/` (already rewritten) and train.log stay."""
    if reason is None:
        record = (read_json(out_dir / JOB_FILE).get("config")
                  or read_json(out_dir / "results.json").get("config"))
        before = portable(record)
        changed = _changed_keys(before, config) if before else []
        reason = ("config changed: " + "; ".join(changed[:10]) + (f"; ... ({len(changed)} keys)" if len(changed) > 10
                  else "")) if changed else "written by another config of this job"
    set_aside(out_dir, reason, KEEP_IN_PLACE)


def _changed_keys(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` for every dotted key whose value differs (missing on one side: `<absent>`)."""
    changed = []
    for key in sorted(set(before) | set(after), key=str):
        old, new = before.get(key, "<absent>"), after.get(key, "<absent>")
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed_keys(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}: {old} -> {new}")
    return changed


def _claim_gpu_if_parallel(cfg: DictConfig) -> None:
    """joblib runs jobs side by side in long-lived worker processes; on a multi-GPU machine each worker claims one
    free GPU (an flock held until the process exits) and sees only it. Needs CUDA not yet initialised in the worker,
    which holds before its first job."""
    if _claimed_gpu or "joblib" not in str(OmegaConf.select(HydraConfig.get(), "launcher._target_")).lower():
        return
    import torch

    if cfg.trainer.get("devices") != 1 or torch.cuda.device_count() < 2 or torch.cuda.is_initialized():
        return
    gpu = claim_free(torch.cuda.device_count(), Path(cfg.paths.cache_dir) / "gpu_locks")
    if gpu is None:
        log.warning("every GPU is claimed by another job: this job shares the first one")
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = visible.split(",")[gpu] if visible else str(gpu)
    log.info("This worker runs its jobs on GPU %s", os.environ["CUDA_VISIBLE_DEVICES"])


def claim_free(n: int, lock_dir: Path) -> int | None:
    """The first of `n` slots whose lock file no live process holds, now held by this process until it exits."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(n):
        handle = open(lock_dir / f"{slot}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _claimed_gpu.append(handle)
        return slot
    return None


def failed_jobs(sweep_dir: Path, since_ns: int) -> tuple[list[dict[str, Any]], int]:
    """(the jobs started since `since_ns` whose results.json is missing or not ok, how many jobs started since then).
    Hydra rewrites a job's .hydra/hydra.yaml whenever it starts the job, skipped or not."""
    from poolhead.sweep.report.collect import load_jobs

    ran = [job for job in load_jobs(sweep_dir)
           if (job["dir"] / ".hydra" / "hydra.yaml").exists()
           and (job["dir"] / ".hydra" / "hydra.yaml").stat().st_mtime_ns >= since_ns]
    return [job for job in ran if job.get("status") not in ("ok", "paused")  # paused: stopped at a rung
            and not claimed_elsewhere(job["dir"])], len(ran)


class ExitStatusCallback(Callback):
    """Hydra callback: exit 1 at the end of a multirun in which a job failed, saying how many and where their errors
    are. Listed before the report in conf/hydra/default.yaml because Hydra calls `on_multirun_end` in reverse order:
    this runs after the report is written, and after every job ran."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        self.marker = sweep_dir / ".multirun_started"  # its mtime is the file system's clock, as the jobs' files are
        try:  # before any job: also for sweepers that write into the folder first (Optuna)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            self.marker.touch()
            self.since_ns = self.marker.stat().st_mtime_ns  # now: a worker started later on the sweep touches it again
        except OSError as err:
            sys.exit(f"hydra.sweep.dir={sweep_dir}: cannot write there ({err.strerror or err}); no job was started. "
                     "Choose a folder you can write, e.g. hydra.sweep.dir=logs/my_sweep")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed, total = failed_jobs(Path(str(config.hydra.sweep.dir)), self.since_ns)
        if not failed:
            return
        lines = [f"{len(failed)} of {total} jobs failed (the sweep went on; summary.md lists them):"]
        lines += [f"  {job['dir']}/results.json: {job.get('error') or job['status']}" for job in failed]
        print("\n".join(lines), file=sys.stderr, flush=True)
        raise SystemExit(1)


def report_interrupted(sweep_dir: str | Path) -> None:
    """A sweep interrupted mid-job (SIGTERM: pre-emption, a time limit): the report of the jobs that finished, and
    what to do, before the process exits non-zero (Hydra's end-of-multirun callbacks do not run then)."""
    try:
        from poolhead.sweep.report import write_report

        report = write_report(Path(str(sweep_dir)))
        done = int((report["summary"]["status"] == "ok").sum()) if "status" in report["summary"] else 0
        where = report["summary_md"]
    except Exception as err:
        done, where = 0, f"(not written: {type(err).__name__}: {err})"
    print(f"sweep interrupted: {done} finished job(s) reported in {where}; run the same command again to continue "
          "(finished jobs are skipped, the interrupted one resumes from its last.ckpt)", file=sys.stderr, flush=True)
