"""What poolhead prints to the console, in one place: the closing lines of a run (with "Next:" commands built
from the run's own config) and the log filters that keep Lightning's output to one line per message."""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from poolhead.data import DEMO_DIR
from poolhead.run.record import shown

SWEPT = ("pooling", "head")  # what the printed sweep varies; the run's other overrides are kept
NOT_REPEATED = ("hydra.", "ckpt_path", "pooling", "head", "seed")  # overrides a "Next:" sweep does not copy


def quiet_known_noise() -> None:
    """Drop Lightning's cloud-service tips ("💡 Tip: ... litlogger") and a FutureWarning torch raises inside
    Lightning's own code (not poolhead's to fix); every other warning stays."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    # poolhead's batch sampler resumes mid-epoch by itself (it skips the batches trained: data/sampling.py)
    warnings.filterwarnings("ignore",
                            message="You're resuming from a checkpoint that ended before the epoch ended")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_no_tips)
    one_console_line()


def one_console_line() -> None:
    """Each Lightning log line once: when the root logger prints (Hydra's job logging), drop the console
    handler `import lightning` adds ("INFO: ..."), which printed every line a second time."""
    if not logging.getLogger().handlers:
        return
    own = logging.getLogger("lightning")
    for handler in list(own.handlers):
        if type(handler) is logging.StreamHandler:  # the console one; a FileHandler (a subclass) stays
            own.removeHandler(handler)


def _no_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip:")


def closing_summary(results: dict[str, Any], cfg: DictConfig, overrides: list[str] | None = None,
                    program: str = "poolhead train") -> str:
    """The last lines of a single run: the main metric, where the files are, and what to try next."""
    out = _shown(Path(cfg.paths.output_dir))
    metrics, monitor = results["metrics"], results["monitor"]
    test = f"test/{monitor.split('/', 1)[1]}"
    headline = f"{monitor} {shown(metrics[monitor])}"
    headline += f", {test} {shown(metrics[test])}" if test in metrics else ""
    best = results["checkpoints"].get("best")
    lines = [
        f"Done: {headline} (best checkpoint; {results['timing'].get('train_seconds', 0):.0f} s of training)",
        f"  run folder       {out}",
        f"  results          {out / 'results.json'}",
        f"  predictions      {out / 'predictions.csv'}",
        f"  best checkpoint  {_shown(Path(best)) if best else '(none)'}",
        "Next:",
        *(f"  {line}" for line in next_commands(cfg, list(overrides or []), program)),
    ]
    return "\n".join(lines)


def next_commands(cfg: DictConfig, overrides: list[str], program: str = "poolhead train") -> list[str]:
    """A sweep, predict, eval and export of this run, each runnable as printed: on the run's own data and
    mode, writing into the run folder or a new folder, never into the package."""
    out = _shown(Path(cfg.paths.output_dir))
    kept = [o for o in overrides if not o.lstrip("+~").startswith(NOT_REPEATED)]
    sweep = [*kept, "pooling=cls,mean,max", "head=regression,classification"]
    data = [o for o in overrides if o.lstrip("+~").startswith("data")] or own_data(cfg)
    source = input_file(cfg)
    predict = (f"{_cmd('poolhead')} predict {_q(out)} --input {_q(source)} "
               f"--output {_q(out / 'next.pred.csv')}")
    return [
        f"{train_command(program)} -m {' '.join(map(shlex.quote, sweep))}   # a sweep on this data",
        f"{predict}   # score rows of a file",
        f"{_cmd('poolhead')} eval {_q(out)} {' '.join(map(shlex.quote, data))}   # score a data "
        "config (data.test=FILE: a held-out file)",
        f"{_cmd('poolhead')} export {_q(out)} --to {_q(export_target(out))}   # a sentence-transformers / "
        "transformers folder",
    ]


def own_data(cfg: DictConfig) -> list[str]:
    """The data this run trained on as `poolhead eval` overrides (a preset's data, not set on the command
    line)."""
    data = [f"data={cfg.data.name}"]
    return data + [f"data.dir={cfg.data.dir}"] if cfg.data.get("dir") else data


def input_file(cfg: DictConfig) -> Path:
    """A file `poolhead predict` can read for this run: the run's own test (else val, else train) file when it
    trained on files of its own, else the bundled demo pairs (STS-style sentence1, sentence2, score)."""
    data = cfg.data
    for split in ("test", "val", "train"):
        if "text" in data and data.get(split):
            return _shown(Path(str(data[split])))
    return _shown(DEMO_DIR / "pairs.csv")


def export_target(out: Path) -> Path:
    """exported/<run folder's name>, numbered while that folder exists (an export needs a new folder)."""
    target, n = Path("exported") / out.name, 1
    while target.exists():
        n += 1
        target = Path("exported") / f"{out.name}-{n}"
    return target


def train_command(program: str) -> str:
    """How this run was started, as a command: `python <path of train.py>` in the repository, else `poolhead
    train`."""
    if program.endswith(".py"):
        return f"{_cmd('python')} {_q(_shown(Path(program)))}"
    return f"{_cmd('poolhead')} train"


def _cmd(name: str) -> str:
    """`name` as a command that runs as printed: bare when PATH finds this interpreter's own, else its path in
    this interpreter's bin folder (a virtualenv that was not activated: `.venv/bin/poolhead`)."""
    own = Path(sys.executable).parent / name
    found = shutil.which(name)
    if found and Path(found).parent.resolve() == own.parent.resolve():
        return name
    return str(_shown(own)) if own.exists() else name


def _q(path: Path) -> str:
    return shlex.quote(str(path))


def _shown(path: Path) -> Path:
    """Relative to the working directory when inside it (shorter to copy), else as it is."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path
