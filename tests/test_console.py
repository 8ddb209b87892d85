"""The closing "Next:" lines are built from the run's own config: the sweep keeps the run's data, mode and
other overrides, predict reads a file of the run's own data and writes into the run folder (never into the
package), eval scores the run's data config, and export writes to a folder that does not exist yet. (That each
runs as printed: tests/test_use.py for train.py, tests/test_wheel.py for an installed `poolhead train`.)"""

from __future__ import annotations

import shlex
from pathlib import Path

from conftest import compose_cfg

import poolhead
from poolhead.use.console import next_commands


def lines_for(tmp_path: Path, overrides: list[str], program: str = "poolhead train") -> dict[str, list[str]]:
    cfg = compose_cfg(overrides, tmp_path / "run")
    found = next_commands(cfg, overrides, program)
    return {
        what: shlex.split(next(line for line in found if f" {what} " in line).split("   #")[0])
        for what in ("-m", "predict", "eval", "export")
    }


def test_next_lines_follow_a_csv_run(tmp_path, monkeypatch):
    """The bug it catches (the issue): a fixed string that sweeps the demo data after training on your CSV,
    points eval at ../shared/data/stsb and predict at the package's own pairs.csv, writing into the package
    folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.csv").write_text("text,label\na,1\n")
    given = [
        "data=csv",
        "data.train=mine.csv",
        "data.text=text",
        "mode=single",
        "pooling=cls",
        "encoder=tiny",
        "seed=3",
        "hydra.run.dir=x",
    ]
    lines = lines_for(tmp_path, given)
    sweep = lines["-m"]
    assert sweep[:3] == ["poolhead", "train", "-m"] or sweep[1:3] == ["train", "-m"]
    assert {"data=csv", "data.train=mine.csv", "data.text=text", "mode=single", "encoder=tiny"} <= set(sweep)
    assert (
        "pooling=cls" not in sweep
        and "seed=3" not in sweep
        and not any(a.startswith("hydra.") for a in sweep)
    )
    predict = lines["predict"]
    assert predict[predict.index("--input") + 1] == "mine.csv"
    output = Path(predict[predict.index("--output") + 1]).resolve()
    package = Path(poolhead.__file__).resolve().parent
    assert output.parent == (tmp_path / "run").resolve() and package not in output.parents
    assert {"data=csv", "data.train=mine.csv", "data.text=text"} <= set(lines["eval"])
    assert not any("shared/data" in a for a in lines["eval"])


def test_next_lines_of_a_demo_run_and_a_second_export(tmp_path, monkeypatch):
    """Demo data: eval names data=demo, predict reads the bundled pairs but writes into the run folder; export
    targets a folder that does not exist (the issue: a second run's `--to exported/` failed, not empty)."""
    monkeypatch.chdir(tmp_path)
    lines = lines_for(tmp_path, ["encoder=tiny"], program=str(tmp_path / "train.py"))
    assert lines["-m"][1:3] == ["train.py", "-m"]
    assert "data=demo" in lines["eval"]
    predict = lines["predict"]
    assert Path(predict[predict.index("--output") + 1]).resolve().parent == (tmp_path / "run").resolve()
    target = Path(lines["export"][lines["export"].index("--to") + 1])
    assert not target.exists() and target.name == "run"
    target.mkdir(parents=True)
    again = Path(lines_for(tmp_path, ["encoder=tiny"])["export"][-1])
    assert again != target and not again.exists()
