"""A checkpoint is data, not code: loading one (poolhead.load, predict, eval, export, a resume) never runs
what its author pickled, named or wrote as an interpolation, and never writes outside its own folder; a run
folder's saved config is read the same way on resume. Each test fails on the code before issue 32 (or 44,
below)."""

import base64
import json
import re
import shutil
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONF, FAST, compose_cfg
from omegaconf import OmegaConf
from transformers import AutoTokenizer

import poolhead
import poolhead.core.pooling
from poolhead import load
from poolhead.core.hub import load_tokenizer
from poolhead.core.task import TaskSpec
from poolhead.data.sources import DEMO_DIR
from poolhead.run.build import build_model
from poolhead.run.checkpoint import Description, UntrustedCheckpoint, check_entry, trusted_target
from poolhead.run.plan import resolve
from poolhead.run.train import run
from poolhead.sweep.jobs import unreadable_checkpoint
from poolhead.sweep.report.collect import load_jobs
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


# --- issue 44: a checkpoint and a run folder are data, never code ------------------------------------
def payload(marker: Path) -> str:
    """An interpolation that, once resolved, builds `open(marker, "w")`: no literal `_target_` key."""
    return f"${{oc.create:{{_target_: builtins.open, _args_: ['{marker}', w]}}}}"


def put(path: list[str], value):
    """A change for `crafted`: checkpoint["poolhead"][path[0]]...[path[-1]] = value."""
    def change(checkpoint):
        node = checkpoint["poolhead"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


PAIRS = str(DEMO_DIR / "pairs.csv")
ENTRIES = {  # each route from a checkpoint file to a built model: CLI arguments, None for poolhead.load
    "load": None,
    "predict": lambda ckpt, out: ["predict", str(ckpt), "--input", PAIRS, "--output", str(out / "p.csv")],
    "export": lambda ckpt, out: ["export", str(ckpt), "--to", str(out / "exported")],
    "eval": lambda ckpt, out: ["eval", str(ckpt), "data=demo", "--split", "val"],
}


@pytest.mark.parametrize("where", [["config", "head", "dropout"], ["config", "data", "batch_size"],
                                   ["encoder_config", "note"]], ids=["config", "data", "encoder_config"])
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_an_interpolation_in_the_description_is_refused_naming_file_and_key(trained, tmp_path, capsys,
                                                                            where, entry):
    """Bug caught: `${oc.create:{_target_: ...}}` resolved while the model is rebuilt (the old check looked
    for literal `_target_` keys only): it opened a file under load, predict, export and eval, and in
    encoder_config predict even exited 0 with normal predictions."""
    marker = tmp_path / "marker"
    evil = crafted(trained, tmp_path, put(where, payload(marker)))
    key = ".".join(["poolhead", *where])
    if ENTRIES[entry] is None:
        with pytest.raises(UntrustedCheckpoint, match=rf"{evil}: refused: {key} holds an OmegaConf interp"):
            load(evil)
        with pytest.raises(UntrustedCheckpoint, match=key):
            load(evil, trust_remote_code=True)  # the opt-in is for custom components, not interpolations
    else:
        assert cli(ENTRIES[entry](evil, tmp_path)) == 1
        err = capsys.readouterr().err
        assert str(evil) in err and key in err, err
    assert not marker.exists(), "the interpolation was resolved and built its object"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.ckpt"], "nothing written"


@pytest.mark.parametrize("change, words", [
    (put(["config", "optim", "lr"], "0.1"), "config.optim.lr is '0.1' (str), where poolhead writes int or"),
    (put(["config", "extra"], {"_target_": "poolhead.core.pooling.Mean"}), "config.extra is not a key"),
    (put(["config", "pooling", "surprise"], 1), "config.pooling.surprise is not an argument of "
                                                "poolhead.core.pooling.Mean"),
    (put(["config", "head", "_args_"], ["x"]), "config.head._args_ is not an argument"),
    (put(["task", "kind"], "regression"), "task.kind is 'regression', not one of score, class, multilabel"),
    (put(["encoder_config", "auto_map"], {"AutoModel": "evil.Model"}), "encoder_config.auto_map names"),
    (put(["config", "seed"], torch.zeros(1)), "poolhead.config.seed is a Tensor, not a plain value"),
], ids=["type", "key", "argument", "args", "task", "auto_map", "tensor"])
def test_a_description_outside_poolheads_schema_is_refused_before_anything_is_built(trained, tmp_path, change,
                                                                                    words, monkeypatch):
    """Bug caught: a description read as whatever it holds, built first and failing (or not) deep in Hydra,
    transformers or torch, with no file or key named."""
    evil = crafted(trained, tmp_path, change)
    monkeypatch.setattr("poolhead.run.build.make", lambda *a, **k: pytest.fail("built before the check"))
    with pytest.raises(UntrustedCheckpoint, match=rf"{evil}: refused: {re.escape(words)}"):
        load(evil)


def tokenizer_code(marker: Path) -> dict[str, str]:
    """Embedded tokenizer code (evil_tok.py) that creates `marker` when imported."""
    code = (f"import transformers\nopen({str(marker)!r}, 'w').close()\n\n\n"
            "class EvilTokenizer(transformers.BertTokenizerFast):\n    pass\n")
    return {"evil_tok.py": base64.b64encode(code.encode()).decode()}


def with_auto_map(checkpoint: dict, marker: Path) -> None:
    """The embedded tokenizer_config.json names evil_tok.py's class through an auto_map."""
    files = checkpoint["poolhead"]["tokenizer_files"]
    config = json.loads(base64.b64decode(files["tokenizer_config.json"]))
    config["auto_map"] = {"AutoTokenizer": [None, "evil_tok.EvilTokenizer"]}
    config["tokenizer_class"] = "EvilTokenizer"  # no transformers class of that name: only the code has it
    files["tokenizer_config.json"] = base64.b64encode(json.dumps(config).encode()).decode()
    files.update(tokenizer_code(marker))


def test_embedded_tokenizer_code_is_refused_whatever_the_terminal_answers(trained, tmp_path, monkeypatch):
    """Bug caught: an auto_map in the embedded tokenizer_config.json; transformers asks "run the custom
    code? [y/N]" on a terminal, and `y` ran it without --trust-remote-code. Refused naming the file before
    transformers is called; a .py file alone is refused too."""
    marker = tmp_path / "marker"
    monkeypatch.setattr("builtins.input", lambda *args: "y")  # a user who answers yes at the prompt
    monkeypatch.setattr("poolhead.run.checkpoint.load_tokenizer", lambda *a, **k: pytest.fail("called"))
    evil = crafted(trained, tmp_path, lambda c: with_auto_map(c, marker))
    said = r"embedded tokenizer file tokenizer_config.json has an auto_map.*--trust-remote-code"
    with pytest.raises(UntrustedCheckpoint, match=rf"{evil}: refused: {said}"):
        load(evil)
    code = tokenizer_code(marker)
    only_code = crafted(trained, tmp_path, lambda c: c["poolhead"]["tokenizer_files"].update(code))
    with pytest.raises(UntrustedCheckpoint, match="'evil_tok.py' is Python code"):
        load(only_code)
    assert not marker.exists()


def test_tokenizer_loading_says_no_to_custom_code_itself(tmp_path, monkeypatch):
    """Bug caught: AutoTokenizer.from_pretrained without trust_remote_code: transformers then asks on the
    terminal, and a `y` runs the folder's code. poolhead passes trust_remote_code=False explicitly."""
    marker = tmp_path / "marker"
    folder = tmp_path / "tokenizer"
    AutoTokenizer.from_pretrained(poolhead.minilm_path()).save_pretrained(folder)
    checkpoint = {"poolhead": {"tokenizer_files": {p.name: base64.b64encode(p.read_bytes()).decode()
                                                   for p in folder.iterdir()}}}
    with_auto_map(checkpoint, marker)
    for name, content in checkpoint["poolhead"]["tokenizer_files"].items():
        (folder / name).write_bytes(base64.b64decode(content))
    monkeypatch.setattr("builtins.input", lambda *args: "y")
    with pytest.raises(ValueError, match="custom code"):
        load_tokenizer(folder)
    assert not marker.exists(), "the folder's tokenizer code ran"


def saved_run(trained: Path, folder: Path, change=None) -> Path:
    """A copy of `trained` with the .hydra/config.yaml Hydra would have saved (interpolations unresolved),
    changed by `change(config)`."""
    shutil.copytree(trained, folder)
    cfg = compose_cfg([*FAST, "keep_last_checkpoint=true"], folder)
    config = OmegaConf.to_container(cfg, resolve=False)
    if change:
        change(config)
    (folder / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(OmegaConf.create(config), folder / ".hydra" / "config.yaml")
    return folder


def resume(folder: Path) -> dict:
    return run(compose_cfg([*FAST, "keep_last_checkpoint=true", "ckpt_path=last"], folder))


@pytest.mark.parametrize("case", ["interpolation", "target"])
def test_a_resume_refuses_a_run_folders_config_that_would_run_code(trained, tmp_path, case):
    """Bug caught: a resume trains under the run folder's own .hydra/config.yaml, and an interpolation there
    (`${oc.create:{_target_: ...}}`) was resolved and built. Refused naming the file and the key; nothing of
    the run is changed."""
    marker = tmp_path / "marker"
    target = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}
    value = payload(marker) if case == "interpolation" else target
    folder = saved_run(trained, tmp_path / "run", lambda c: c["mode"].__setitem__("extra", value))
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    results = resume(folder)
    said = ("config.mode.extra calls the resolver 'oc.create'" if case == "interpolation"
            else "refused to build config.mode.extra._target_='builtins.open'")
    assert not marker.exists(), "the run folder's config built its object"
    assert results["status"] == "failed", results
    assert str(folder / ".hydra" / "config.yaml") in results["error"] and said in results["error"], results
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_a_resume_of_a_run_folder_as_hydra_saved_it_goes_on(trained, tmp_path):
    """The check lets through what poolhead's own conf/ writes (`${paths.*}`, `${oc.env:...}`,
    `${hydra:...}`, `${minilm:}`, the trainer's, callbacks' and logger's `_target_`s): a finished run
    resumes and stays ok. Bug caught too: the run folder's .hydra/hydra.yaml (the choices results.json
    records) read through OmegaConf, which resolved an interpolation there; it is read as plain YAML."""
    folder = saved_run(trained, tmp_path / "run")
    assert "${oc.env:" in (folder / ".hydra" / "config.yaml").read_text()
    choice = "${oc.create:{_target_: builtins.open}}"
    hydra = {"hydra": {"runtime": {"choices": {"pooling": choice}}, "overrides": {"task": ["seed=3"]}}}
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    results = resume(folder)
    assert results["status"] == "ok", results["error"]
    assert results["config"]["pooling"] == choice and results["config"]["overrides"] == ["seed=3"]


def test_a_sweep_report_reads_a_jobs_number_without_resolving_its_hydra_yaml(tmp_path):
    """Bug caught: the report read hydra.job.num through OmegaConf.select, resolving whatever a job folder's
    .hydra/hydra.yaml holds there (`${oc.create:...}` built a config and crashed the report)."""
    job = tmp_path / "sweep" / "7"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    num: '${oc.create:{a: 1}}'\n")
    (job / "results.json").write_text(json.dumps({"status": "ok"}))
    assert [j["job"] for j in load_jobs(tmp_path / "sweep")] == [7]  # the folder's name, nothing resolved


def test_a_pickle_is_refused_on_resume_by_the_loader_lightning_uses(trained, tmp_path, monkeypatch):
    """Bug caught: the checkpoint IO that Lightning resumes through loading with weights_only=False: only
    poolhead's own pre-read (plan.resume_path) stood between a pickled payload and a resume. Here that
    pre-read is skipped."""
    marker = tmp_path / "marker"
    inside = tmp_path / "resume" / "checkpoints"  # a checkpoint of this run's own folder (one from elsewhere is
    inside.mkdir(parents=True)                   # refused before any load: test_resume_edges.py)
    evil = crafted(trained, inside, lambda c: c["poolhead"].__setitem__("extra", Payload(marker)))
    monkeypatch.setattr("poolhead.run.plan.read_checkpoint", lambda path, *args: {"global_step": 0})
    results = run(compose_cfg([*FAST, f"ckpt_path={evil}"], tmp_path / "resume"))
    assert not marker.exists(), "the checkpoint's payload ran on resume"
    assert results["status"] == "failed"
    assert f"{evil}: refused: the checkpoint holds pickled" in results["error"], results["error"]


def test_the_checkpoint_crc_check_finds_a_corrupt_member(trained, tmp_path):
    """Bug caught: the zip CRC check of a checkpoint (what a re-run reads before resuming from last.ckpt)
    saying "fine" for a member whose bytes changed: the zip is whole, one byte of the weights is not."""
    good = trained / "checkpoints" / "last.ckpt"
    assert unreadable_checkpoint(good) is None
    bad = tmp_path / "last.ckpt"
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:  # the largest member: a tensor's storage, stored uncompressed
        member = max(archive.infolist(), key=lambda info: info.file_size)
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    data[start + member.file_size // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    assert unreadable_checkpoint(bad) == f"member {member.filename} is corrupt"


@pytest.mark.parametrize("module, target", [("torch.optim_x", "torch.optim_x.Adam"),
                                            ("poolhead.core.pooling_evil", "poolhead.core.pooling_evil.Mean"),
                                            ("poolhead.data_evil", "poolhead.data_evil.TableData")])
def test_a_module_named_like_a_trusted_one_is_not_trusted(monkeypatch, module, target):
    """Bug caught: the trusted-module check done with a bare prefix (`name.startswith("torch.optim")`),
    which lets a module whose name merely starts like a trusted one (`torch.optim_x`) build its classes."""
    name = target.rsplit(".", 1)[1]
    fake = types.ModuleType(module)
    setattr(fake, name, type(name, (), {"__module__": module}))
    monkeypatch.setitem(sys.modules, module, fake)
    assert not trusted_target(target)
    assert trusted_target("torch.optim.Adam") and trusted_target("poolhead.core.pooling.Mean")


STS = TaskSpec(kind="score", score_range=(0.0, 5.0), label_names=None, binary_threshold=3.0)
CLASSES = TaskSpec(kind="class", label_names=("a", "b", "c"))
LABELS = TaskSpec(kind="multilabel", label_names=("x", "y"))


@pytest.mark.parametrize("overrides, task", [
    (["pooling=attention", "mode=bi", "encoder.layers=[-1,-2]"], STS),
    (["pooling=weighted_mean", "mode=single", "head=classification", "head.hidden_dims=[8]",
      "head.class_weights=[1.0,2.0,1.0]"], CLASSES),
    (["pooling=max", "mode=single", "head=multilabel", "optim=sgd", "optim.scheduler=null"], LABELS),
    (["pooling=pooler", "mode=cross", "head=regression", "head.loss=bce", "data=csv", "data.text_pair=b",
      "data.label=[s]", "encoder.freeze=true", "cache_features=true"], STS),
], ids=["bi-attention-layers", "single-class", "multilabel-sgd", "cross-csv-frozen"])
def test_every_description_poolhead_writes_passes_its_own_check(tmp_path, overrides, task):
    """Bug caught: a schema stricter than what poolhead writes (a key, a type or a component argument of
    some option), which would refuse poolhead's own checkpoints. The description goes through
    torch.save/load as in a checkpoint."""
    cfg = resolve(compose_cfg([*FAST, *overrides], tmp_path), task)
    model = build_model(cfg, task)
    model.encoder.tokenizer = AutoTokenizer.from_pretrained(model.encoder.tokenizer)
    torch.save({"poolhead": Description.of(cfg, task, model).as_dict()}, tmp_path / "d.ckpt")
    entry = torch.load(tmp_path / "d.ckpt", weights_only=True)["poolhead"]
    check_entry(entry, tmp_path / "d.ckpt", trust_remote_code=False)
