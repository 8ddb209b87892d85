"""The acceptance test of poolhead as an installed tool (issue 42): build the wheel, install it into a fresh
virtual environment (torch pinned first, as the Makefile does), and from an empty folder, with no repository
in sight, run `poolhead train` on a CSV of its own (the tiny encoder), the closing "Next:" lines as printed
(predict, eval, export, and their sweep cut to two jobs), `poolhead-report`, `python -m poolhead` and
`poolhead.load(...).predict(...)`. Minutes (the venv's install): marked slow. POOLHEAD_WHEEL_VENV=<an existing
venv> reuses one (the wheel is reinstalled there), for a quicker second try."""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow
TORCH = "torch==2.13.0"  # the Makefile's pin: an unpinned torch pulls CUDA wheels
WORDS = "cat dog man woman plays guitar sings song runs park eats food reads book".split()


def sh(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-4000:])
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A virtual environment holding only the wheel (with its export extra) and what it depends on."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    sh(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(tmp / "dist")],
        tmp,
        env,
    )
    (wheel,) = (tmp / "dist").glob("poolhead-*.whl")
    reuse = os.environ.get("POOLHEAD_WHEEL_VENV")
    folder = Path(reuse) if reuse else tmp / "venv"
    python = folder / "bin" / "python"
    if not reuse:
        sh([sys.executable, "-m", "venv", str(folder)], tmp, env)
        sh([str(python), "-m", "pip", "install", "-q", TORCH], tmp, env)
    sh([str(python), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(wheel)], tmp, env)
    sh([str(python), "-m", "pip", "install", "-q", f"{wheel}[export]"], tmp, env)
    return folder


def next_lines(stdout: str) -> dict[str, list[str]]:
    """The "Next:" commands, split as a shell would, by what they do."""
    lines = stdout[stdout.index("\nNext:") + 1 :].splitlines()[1:]
    found = {}
    for line in lines:
        if not line.startswith("  "):
            break
        words = shlex.split(line.split("   #")[0])
        what = "sweep" if "-m" in words else next(w for w in ("predict", "eval", "export") if w in words)
        found[what] = words
    return found


def test_the_wheel_trains_sweeps_predicts_evaluates_exports_from_an_empty_folder(venv, tmp_path):
    work = tmp_path / "empty"
    work.mkdir()
    rng = random.Random(0)
    rows = [
        {
            "text": " ".join(rng.sample(WORDS, 4)),
            "text_pair": " ".join(rng.sample(WORDS, 4)),
            "label": round(rng.uniform(0, 5), 2),
        }
        for _ in range(80)
    ]
    pd.DataFrame(rows).to_csv(work / "pairs.csv", index=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
    }
    bin_ = venv / "bin"

    assert sh([str(bin_ / "poolhead"), "--version"], work, env).startswith("poolhead ")
    assert "config groups:" in sh([str(bin_ / "python"), "-m", "poolhead", "train", "--help"], work, env)
    given = [
        "encoder=tiny",
        "data=csv",
        "data.train=pairs.csv",
        "data.text_pair=text_pair",
        "mode=cross",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    ]
    out = sh([str(bin_ / "poolhead"), "train", *given, "hydra.run.dir=run"], work, env)
    results = json.loads((work / "run" / "results.json").read_text())
    assert results["status"] == "ok" and results["data"]["train"] + results["data"]["val"] == 80
    assert results["config"]["data"] == "csv", "the run's own data, from the package's configs"
    commands = next_lines(out)

    sh(commands["predict"], work, env)  # each as printed
    predicted = pd.read_csv(work / "run" / "next.pred.csv")
    assert len(predicted) == 80 and predicted["pred"].notna().all()
    sh(commands["eval"], work, env)
    assert "val/spearman" in json.loads((work / "run" / "eval.json").read_text())["csv"]["metrics"]
    sh(commands["export"], work, env)
    target = work / commands["export"][commands["export"].index("--to") + 1]
    assert (target / "README.md").is_file() and (target / "config.json").is_file()

    sweep = [w for w in commands["sweep"] if not w.startswith(("pooling=", "head="))]
    sh([*sweep, "pooling=mean,cls", "head=regression", "hydra.sweep.dir=sweep"], work, env)
    jobs = [json.loads(p.read_text()) for p in (work / "sweep").glob("*/results.json")]
    assert len(jobs) == 2 and all(j["status"] == "ok" for j in jobs)
    assert (work / "sweep" / "summary.md").is_file()
    sh([str(bin_ / "poolhead-report"), "sweep"], work, env)

    code = (
        "import poolhead, pandas as pd\n"
        "rows = pd.read_csv('pairs.csv')\n"
        "scores = poolhead.load('run').predict(list(zip(rows['text'], rows['text_pair'])))\n"
        "print(' '.join(repr(float(s)) for s in scores))"
    )
    scores = [float(s) for s in sh([str(bin_ / "python"), "-c", code], work, env).split()]
    assert max(abs(a - b) for a, b in zip(scores, predicted["pred"], strict=True)) <= 1e-5
    assert not any(work.glob("**/site-packages")), "nothing written into the package"
