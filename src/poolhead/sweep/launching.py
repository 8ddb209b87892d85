"""What poolhead's two sweepers share (halving.py, optuna_sweep.py): Hydra's launcher and the sweep folder,
rungs in training steps (checked against a job's training budget), and a job's score at a rung read from its
records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from poolhead.run.record import read_json


class Pending:
    """A score not there yet: the job has not reached that rung (or was interrupted before it)."""

    def __repr__(self) -> str:
        return "pending"


PENDING = Pending()


def check_rungs(rungs: Sequence[int]) -> None:
    """Rungs are increasing whole numbers of training steps (both sweepers stop jobs there)."""
    if any(not isinstance(r, int) or r <= 0 for r in rungs) or list(rungs) != sorted(set(rungs)):
        raise ValueError(f"hydra.sweeper.rungs={list(rungs)}: expected increasing whole numbers of steps > 0")


def check_rung_form(rungs: Sequence[Any]) -> None:
    """Rungs in steps (increasing whole numbers > 0) or as fractions of the budget (increasing, each in (0,
    1))."""
    if rungs and all(isinstance(r, float) for r in rungs):
        if any(not 0 < r < 1 for r in rungs) or list(rungs) != sorted(set(rungs)):
            raise ValueError(f"hydra.sweeper.rungs={list(rungs)}: fractions of the training budget must "
                             "increase and lie strictly between 0 and 1")
        return
    check_rungs(rungs)


def rung_steps(rungs: Sequence[Any], budget: int, why: str = "") -> list[int]:
    """The rungs in training steps (fractions of `budget` rounded, at least 1), each strictly below `budget`:
    a job stopped at the budget or past it never pauses there, so its rung could never complete. `why`: how
    the budget was found, for the message."""
    check_rung_form(rungs)
    steps = [max(1, round(r * budget)) if isinstance(r, float) else r for r in rungs]
    given = f"hydra.sweeper.rungs={list(rungs)}" + (f" (= steps {steps})" if steps != list(rungs) else "")
    if steps != sorted(set(steps)):
        raise ValueError(f"{given}: two rungs fall on one step of a {budget}-step budget{why}; give fewer "
                         "rungs or name them in steps")
    if steps and steps[-1] >= budget:
        raise ValueError(f"{given}: every rung must lie below the training budget of {budget} steps{why}; a "
                         f"job ends at step {budget} and never pauses at a later rung. Use rungs below "
                         f"{budget}, or fractions of the budget (e.g. hydra.sweeper.rungs=[0.125,0.25,0.5])")
    return steps


def training_budget(cfg: DictConfig) -> tuple[int, str]:
    """(optimizer steps a job of `cfg` trains in all, how that was worked out): its training rows as the job
    reads them (the data module's own reading, val carved as the job carves it), in batches cut by
    limit_train_batches, over max_epochs, per accumulate_grad_batches, capped by max_steps. What Lightning's
    estimated_stepping_batches gives once a trainer runs, known here before any job starts."""
    from poolhead.run.build import make

    encoder, trainer = cfg.encoder, cfg.trainer
    datamodule = make(cfg.data, tokenizer=encoder.get("tokenizer") or encoder.get("name_or_path"),
                      mode=make(cfg.mode), max_length=encoder.get("max_length", 128), seed=cfg.seed,
                      cache_dir=cfg.paths.cache_dir)
    datamodule.setup("fit")
    rows, batch = datamodule.sizes["train"], int(cfg.data.batch_size)
    batches = limited(math.ceil(math.ceil(rows / batch) / ranks(trainer)), trainer.get("limit_train_batches"))
    accumulate = int(trainer.get("accumulate_grad_batches") or 1)
    epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps")
    per_epoch = math.ceil(batches / accumulate)
    total = per_epoch * epochs if epochs not in (None, -1) else math.inf
    if max_steps not in (None, -1):
        total = min(total, max_steps)
    if not math.isfinite(total) or total < 1:
        raise ValueError(f"trainer.max_epochs={epochs}, trainer.max_steps={max_steps}, limit_train_batches="
                         f"{trainer.get('limit_train_batches')}: a job would train {total} steps; a sweep "
                         "with rungs needs a finite budget of at least one step")
    why = (f" ({rows} training rows / batch {batch} = {batches} batches an epoch"
           + (f" / accumulate {accumulate}" if accumulate > 1 else "") + f", x {epochs} epochs"
           + (f", max_steps {max_steps}" if max_steps not in (None, -1) else "") + ")")
    return int(total), why


def ranks(trainer: Any) -> int:
    """Processes a DDP job splits each epoch's batches over (data.sampling gives each rank every n-th one)."""
    devices, strategy = trainer.get("devices"), str(trainer.get("strategy") or "")
    return devices if isinstance(devices, int) and devices > 1 and strategy.startswith("ddp") else 1


def limited(batches: int, limit: Any) -> int:
    """Batches an epoch under trainer.limit_train_batches, as Lightning counts them: a whole number caps them,
    a fraction keeps int(batches * fraction), null or 1.0 keeps all."""
    if limit is None or (isinstance(limit, float) and limit == 1.0):
        return batches
    if isinstance(limit, float):
        return int(batches * limit)
    return min(batches, int(limit))


def read_score(job_dir: Path, step: int | None) -> tuple[Any, dict[str, Any]]:
    """(metric, record) of a job at a rung (rungs/step-N/metrics.json) or at the full budget (results.json
    ok); the metric is PENDING when the job has not got there (or was interrupted) and None when it failed."""
    results = read_json(job_dir / "results.json")
    record = results if step is None else read_json(rung_record(job_dir, step))
    if record.get("metrics") and (step is not None or results.get("status") == "ok"):
        return record["metrics"].get(record.get("monitor") or results.get("monitor")), record
    failed = results.get("status") == "failed" and "interrupted" not in str(results.get("error"))
    return (None if failed else PENDING), results


def rung_record(job_dir: Path, step: int) -> Path:
    """Where a job stopped at `step` keeps its metrics (run.callbacks writes it)."""
    return job_dir / "rungs" / f"step-{step:06d}" / "metrics.json"


def trained_past(job_dir: Path, step: int | None) -> bool:
    """The job trained beyond `step` without a record there (a rung of another design): only a run from
    scratch can give that record, since a job never trains backwards."""
    if step is None:
        return False
    results = read_json(job_dir / "results.json")
    furthest = (results.get("rung") or {}).get("step", -1) if results.get("status") == "paused" else \
        (math.inf if results.get("status") == "ok" else -1)
    return furthest > step and not rung_record(job_dir, step).exists()


class LaunchingSweep:
    """The sweepers' common part: Hydra's launcher, and the sweep folder with its multirun.yaml."""

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                               task_function=task_function, config=config)

    def sweep_dir(self) -> Path:
        """The sweep folder, made, with the multirun's config saved in it."""
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        return sweep_dir

    def job_config(self, overrides: Sequence[str]) -> DictConfig:
        """A job's config as the launcher composes it (Hydra's own `load_sweep_config`), without running
        it."""
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
