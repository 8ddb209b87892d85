"""A checkpoint is data, not code: loading one (poolhead.load, predict, eval, export, a resume) never runs what its
author pickled or named, and never writes outside its own folder. Each test fails on the code before issue 32."""

import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONF, FAST, compose_cfg

import poolhead.core.pooling
from poolhead import load
from poolhead.data.sources import DEMO_DIR
from poolhead.run.checkpoint import UntrustedCheckpoint, trusted_target
from poolhead.run.train import run
from poolhead.use.cli import main as cli


class MeanAgain(poolhead.core.pooling.Mean):
    """A user's own pooling (outside poolhead): built from a checkpoint only with trust_remote_code."""


class Payload:
    """Unpickling this creates `marker` (what a crafted checkpoint's author would run instead)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny run with both checkpoints kept."""
    folder = tmp_path_factory.mktemp("trust") / "run"
    results = run(compose_cfg([*FAST, "keep_last_checkpoint=true"], folder))
    assert results["status"] == "ok", results["error"]
    return folder


def crafted(trained: Path, folder: Path, change) -> Path:
    """best.ckpt of `trained`, changed by `change(checkpoint)`, saved as folder/crafted.ckpt."""
    checkpoint = torch.load(trained / "checkpoints" / "best.ckpt", weights_only=True)
    change(checkpoint)
    path = folder / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path


def test_a_pickled_payload_never_runs(trained, tmp_path, capsys):
    marker = tmp_path / "marker"
    evil = crafted(trained, tmp_path, lambda c: c["poolhead"].__setitem__("extra", Payload(marker)))
    with pytest.raises(UntrustedCheckpoint, match=rf"{evil}: refused: the checkpoint holds pickled Python objects"):
        load(evil)
    assert cli(["predict", str(evil), "--input", str(DEMO_DIR / "pairs.csv"), "--output", str(tmp_path / "p.csv")]) == 1
    assert cli(["export", str(evil), "--to", str(tmp_path / "exported")]) == 1
    assert "refused" in capsys.readouterr().err
    resumed = run(compose_cfg([*FAST, f"ckpt_path={evil}"], tmp_path / "resume"))  # poolhead's own pre-read
    assert resumed["status"] == "failed" and "refused" in resumed["error"]
    assert not marker.exists(), "the checkpoint's payload ran"
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "exported").exists()


@pytest.mark.parametrize("target", ["builtins.open", "poolhead.core.pooling.torch.load", "poolhead.use.cli.main"])
def test_a_config_target_outside_poolhead_is_refused_naming_it_and_the_opt_in(trained, tmp_path, capsys, target):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    evil = crafted(trained, tmp_path, lambda c: c["poolhead"]["config"].__setitem__(
        "mode", {"_target_": target, "file": str(victim), "mode": "w"}))
    with pytest.raises(UntrustedCheckpoint, match=rf"config.mode._target_='{target}'.*trust_remote_code=True"):
        load(evil)
    assert cli(["predict", str(evil), "--input", str(DEMO_DIR / "pairs.csv"), "--output", str(tmp_path / "p.csv")]) == 1
    err = capsys.readouterr().err
    assert target in err and "--trust-remote-code" in err
    assert victim.read_text() == "precious"


def test_trust_remote_code_builds_a_users_own_component(trained, tmp_path, capsys):
    custom = crafted(trained, tmp_path, lambda c: c["poolhead"]["config"]["pooling"].__setitem__(
        "_target_", f"{__name__}.MeanAgain"))
    with pytest.raises(UntrustedCheckpoint, match=f"{__name__}.MeanAgain"):
        load(custom)
    assert isinstance(load(custom, trust_remote_code=True).pooling, MeanAgain)
    out = tmp_path / "p.csv"
    assert cli(["predict", str(custom), "--input", str(DEMO_DIR / "pairs.csv"), "--output", str(out), "--quiet",
                "--trust-remote-code"]) == 0, capsys.readouterr().err
    assert out.is_file()


def test_every_component_conf_names_is_trusted():
    targets = set()

    def walk(node):
        if isinstance(node, dict):
            targets.update([node["_target_"]] if "_target_" in node else [])
            for value in node.values():
                walk(value)

    for group in ("encoder", "pooling", "head", "mode", "data", "optim"):
        for path in (CONF / group).glob("*.yaml"):
            walk(yaml.safe_load(path.read_text()))
    assert len(targets) > 15
    assert [t for t in targets if not trusted_target(t)] == []
    assert not trusted_target("poolhead.run.train.run") and not trusted_target("poolhead.data.sources.Path")


@pytest.mark.parametrize("name", ["../escaped.sh", "ABSOLUTE", "sub/vocab.txt", "..", "a\\..\\b"])
def test_tokenizer_file_names_must_be_plain_names(trained, tmp_path, monkeypatch, name):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # load's tokenizer folder: tmp_path/tmp/<x>/
    name = str(tmp_path / "absolute.sh") if name == "ABSOLUTE" else name
    evil = crafted(trained, tmp_path, lambda c: c["poolhead"]["tokenizer_files"].__setitem__(name, "ZWNobyBoaQo="))
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    with pytest.raises(UntrustedCheckpoint, match="is not a plain file name"):
        load(evil)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == before, "nothing written"


def test_weights_that_do_not_fit_or_a_newer_format_say_so_naming_the_file(trained, tmp_path):
    """Bugs caught: torch's raw load_state_dict error (hundreds of key names) as the only message; a checkpoint of a
    later poolhead read as if it were this one's."""
    def drop_a_weight(c):
        c["state_dict"].pop(next(iter(c["state_dict"])))

    bad = crafted(trained, tmp_path, drop_a_weight)
    with pytest.raises(ValueError, match=rf"{bad}: its weights do not fit the model its own description builds"):
        load(bad)
    newer = crafted(trained, tmp_path, lambda c: c["poolhead"].__setitem__("version", 99))
    with pytest.raises(ValueError, match=rf"{newer}: written by a newer poolhead \(checkpoint version 99"):
        load(newer)
