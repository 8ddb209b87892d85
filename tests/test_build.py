"""poolhead.build and self-describing checkpoints, on real (tiny) runs: the metrics in results.json are those of
predictions.csv; poolhead.load in a fresh process reproduces predictions.csv; heads, optimizers, schedules, monitors
and poolings plug in through config alone."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import FAST, ROOT, assert_predictions_match_results, compose_cfg

from poolhead.run.train import run

COLOURS = ["blue", "green", "red", "yellow"]


def class_csv(folder: Path) -> str:
    rows = ["text,label"] + [f"{'great good fine' if i % 2 else 'bad awful poor'} item {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(60)]
    (folder / "class.csv").write_text("\n".join(rows) + "\n")
    return str(folder / "class.csv")


def colours_jsonl(folder: Path, n: int = 240) -> str:
    """Each text names a few colours among filler words; its labels are exactly the colours it names."""
    g = torch.Generator().manual_seed(0)
    lines = []
    for i in range(n):
        present = [c for c in COLOURS if torch.rand(1, generator=g).item() < 0.3]
        words = present + ["the", "a", "thing", "some"][: 1 + i % 4]
        order = torch.randperm(len(words), generator=g).tolist()
        lines.append(json.dumps({"text": " ".join(words[j] for j in order), "label": present}))
    (folder / "colours.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder / "colours.jsonl")


RUNS = {  # name -> overrides (a function of the data folder); each is a real run of the tiny encoder
    "cross": lambda d: ["mode=cross", "pooling=cls",  # and the study's disk settings (conf/experiment/stsb_pooling)
                        "keep_last_checkpoint=false", "callbacks.model_checkpoint.save_weights_only=true"],
    "bi": lambda d: ["mode=bi", "head=classification", "pooling=max"],
    "single_class": lambda d: ["data=csv", f"data.train={class_csv(d)}", "data.task=class", "mode=single",
                               "head=classification"],
    "cached": lambda d: ["encoder.freeze=true", "pooling=attention", "optim.head_lr=1e-2"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    data = tmp_path_factory.mktemp("data")
    done = {}
    for name, overrides in RUNS.items():
        out = tmp_path_factory.mktemp(name)
        results = run(compose_cfg([*FAST, "trainer.max_epochs=2", *overrides(data)], out))
        assert results["status"] == "ok", (name, results["error"])
        done[name] = out
    return done


@pytest.mark.parametrize("name", RUNS)
def test_results_metrics_are_those_of_predictions_csv(runs, name):
    assert_predictions_match_results(runs[name])


def test_a_finished_run_without_keep_last_checkpoint_keeps_only_a_weights_only_best(runs):
    """The study keeps 84 jobs on disk: a finished job's last.ckpt (optimizer state, for resuming) goes, and best.ckpt
    (weights + poolhead's description) still loads in a fresh process (test_load_in_a_fresh_process..[cross])."""
    results = json.loads((runs["cross"] / "results.json").read_text())
    assert results["checkpoints"]["last"] is None
    assert sorted(p.name for p in (runs["cross"] / "checkpoints").iterdir()) == ["best.ckpt"]
    assert "optimizer_states" not in torch.load(runs["cross"] / "checkpoints" / "best.ckpt", weights_only=False)
    assert (runs["bi"] / "checkpoints" / "last.ckpt").is_file(), "the default keeps last.ckpt"


def test_class_predictions_name_labels_with_ids_and_probabilities(runs):
    frame = pd.read_csv(runs["single_class"] / "predictions.csv")
    assert set(frame["gold"]) <= {"neg", "pos"} and set(frame["pred"]) <= {"neg", "pos"}
    assert (frame["pred"] == frame["pred_id"].map({0: "neg", 1: "pos"})).all()
    probabilities = frame[["prob_neg", "prob_pos"]].to_numpy()
    assert abs(probabilities.sum(1) - 1).max() < 1e-6
    assert (probabilities.argmax(1) == frame["pred_id"].to_numpy()).all()


RELOAD = textwrap.dedent("""
    import sys, pandas as pd, poolhead
    from poolhead.use.predict import data_for
    from poolhead.run.evaluate import evaluate
    model = poolhead.load(sys.argv[1])
    data = data_for(model, cache_dir=sys.argv[3])
    splits = ["val"] + (["test"] if data.has_test else [])
    pd.concat([evaluate(model, data, split)[0] for split in splits]).to_csv(sys.argv[2], index=False)
""")


@pytest.mark.parametrize("name", RUNS)
def test_load_in_a_fresh_process_reproduces_predictions(runs, name, tmp_path):
    """Only the checkpoint: no config, no run folder, no hub (HF_HUB_OFFLINE=1)."""
    best = tmp_path / "copied.ckpt"
    best.write_bytes((runs[name] / "checkpoints" / "best.ckpt").read_bytes())
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", RELOAD, str(best), str(tmp_path / "again.csv"), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = pd.read_csv(runs[name] / "predictions.csv")
    again = pd.read_csv(tmp_path / "again.csv")
    assert list(again.columns) == list(expected.columns) and len(again) == len(expected)
    for column in expected.columns:
        if expected[column].dtype.kind == "f":
            assert (again[column] - expected[column]).abs().max() <= 1e-6, column
        else:
            assert (again[column] == expected[column]).all(), column


def test_multilabel_run_learns_well_above_chance(tmp_path):
    cfg = compose_cfg([*FAST, "data=csv", f"data.train={colours_jsonl(tmp_path)}", "data.task=multilabel",
                       "mode=single", "head=multilabel", "trainer.max_epochs=12", "optim.lr=1e-3",
                       "optim.head_lr=1e-2", "data.batch_size=16"], tmp_path)
    results = run(cfg)
    assert results["status"] == "ok", results["error"]
    assert results["monitor"] == "val/f1_micro" and results["monitor_mode"] == "max"
    assert {f"val/f1_{c}" for c in COLOURS} <= set(results["metrics"])
    # chance: every label on everywhere gives micro F1 = 2p/(1+p) with p ~ 0.3 -> ~0.46; nothing on gives 0
    assert results["metrics"]["val/f1_micro"] > 0.8, results["metrics"]
    assert_predictions_match_results(tmp_path, splits=("val",))


def test_bce_loss_trains_a_sigmoid_score_on_sts(tmp_path):
    results = run(compose_cfg([*FAST, "mode=cross", "head.loss=bce", "trainer.max_epochs=3", "optim.lr=1e-3",
                               "trainer.log_every_n_steps=1"], tmp_path))
    assert results["status"] == "ok", results["error"]
    log = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    losses = log["train/loss"].dropna()
    assert losses.iloc[-8:].mean() < losses.iloc[:8].mean(), "the loss fell"
    pred = pd.read_csv(tmp_path / "predictions.csv")["pred"]
    assert pred.between(0, 5, inclusive="neither").all() and pred.std() > 0
    with pytest.raises(ValueError, match="head.loss=bce"):
        from conftest import component

        from poolhead.core.task import TaskSpec

        component("head", "regression", loss="bce")(in_features=4, sides=2, task=TaskSpec("score", (0.0, 5.0)))


def test_sgd_and_a_cosine_schedule_through_the_same_code_path(tmp_path):
    results = run(compose_cfg([*FAST, "optim=sgd", "optim.scheduler.name=cosine", "optim.warmup_ratio=0",
                               "trainer.log_every_n_steps=1", "trainer.max_epochs=2",
                               "mode=cross"], tmp_path))  # cross: the head has weights (pg3)
    assert results["status"] == "ok", results["error"]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert group["momentum"] == 0.9 and "betas" not in group, "the optimizer is SGD"
    total = ckpt["global_step"]
    log = pd.read_csv(tmp_path / "csv" / "metrics.csv").dropna(subset=["lr-SGD/pg1", "lr-SGD/pg3"])
    assert len(log) == total, "one learning rate logged per step"
    for i, (encoder_lr, head_lr) in enumerate(log[["lr-SGD/pg1", "lr-SGD/pg3"]].to_numpy()):
        factor = 0.5 * (1 + math.cos(math.pi * i / total))  # transformers' cosine schedule, no warm-up
        assert encoder_lr == pytest.approx(1e-3 * factor, rel=1e-6), i  # optim.lr of conf/optim/sgd.yaml
        assert head_lr == pytest.approx(1e-2 * factor, rel=1e-6), i  # optim.head_lr


@pytest.mark.parametrize("monitor", ["val/loss", "val/mse"])
def test_monitor_that_is_lower_is_better_keeps_the_lowest_checkpoint(tmp_path, monitor):
    results = run(compose_cfg([*FAST, f"monitor={monitor}", "trainer.max_epochs=4", "optim.lr=1e-3"], tmp_path))
    assert results["status"] == "ok", results["error"]
    assert results["monitor_mode"] == "min"
    per_epoch = pd.read_csv(tmp_path / "csv" / "metrics.csv").dropna(subset=[monitor])[monitor].to_numpy()
    assert len(per_epoch) == 4 and per_epoch.max() > per_epoch.min()
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)
    kept = next(v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint"))["best_model_score"]
    assert float(kept) == pytest.approx(per_epoch.min(), rel=1e-6)


def test_lightning_keys_users_reach_for_need_no_plus(tmp_path):
    results = run(compose_cfg([*FAST, "trainer.max_steps=3", "trainer.limit_val_batches=1",
                               "trainer.accumulate_grad_batches=1", "trainer.val_check_interval=1.0"], tmp_path))
    assert results["status"] == "ok", results["error"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3


def test_a_pooling_added_as_the_readme_says_trains(tmp_path):
    """README "Add a pooling": a plain nn.Module in your own file, a yaml in your own conf folder, hydra.searchpath."""
    readme = (ROOT / "README.md").read_text()
    code = readme.split("```python\n# my_pooling.py\n", 1)[1].split("```", 1)[0]
    yaml = readme.split("```yaml\n# my_conf/pooling/first_last.yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_pooling.py").write_text(code)
    (tmp_path / "my_conf" / "pooling").mkdir(parents=True)
    (tmp_path / "my_conf" / "pooling" / "first_last.yaml").write_text(yaml)
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "pooling=first_last",
                           f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", *FAST, f"hydra.run.dir={tmp_path}/run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "ok" and results["config"]["pooling"] == "first_last"
    assert_predictions_match_results(tmp_path / "run")


def test_last_checkpoint_is_the_last_state_even_when_the_best_is_earlier(tmp_path):
    """Nothing learns (lr 0), so epoch 0 stays the best; last.ckpt must still hold the end of epoch 2 (Lightning's
    save_last alone would leave it at epoch 0, and a resume would train two epochs again)."""
    results = run(compose_cfg([*FAST, "trainer.max_epochs=3", "optim.lr=0", "optim.head_lr=0"], tmp_path))
    assert results["status"] == "ok", results["error"]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)
    assert last["epoch"] == 2 and best["epoch"] == 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx2 avx512f avx512_bf16", "bf16-mixed"),  # AMD EPYC Zen 4: AVX512-BF16
    ("fpu sse avx2 avx512f amx_tile amx_bf16", "bf16-mixed"),  # Intel Sapphire Rapids: AMX
    ("fpu sse avx2 fma", "32-true"),  # AVX2 only (e.g. Zen 3): bf16 autocast would be emulated, slower than fp32
    ("fpu sse avx2 avx512f avx512bw", "32-true"),  # AVX-512 without bf16 units
], ids=["avx512_bf16", "amx", "avx2", "avx512_no_bf16"])
def test_precision_auto_on_cpus(tmp_path, monkeypatch, flags, expected):
    from poolhead.run import plan as builder

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    read_flags = builder.cpu_computes_bf16
    monkeypatch.setattr(builder, "cpu_computes_bf16", lambda: read_flags(cpuinfo))
    assert builder.resolve_precision("auto") == expected
    assert builder.resolve_precision("bf16-mixed") == "bf16-mixed", "a named precision is kept"


@pytest.mark.parametrize("bf16", [True, False], ids=["gpu_with_bf16", "gpu_without_bf16"])
def test_precision_auto_on_gpus_is_fp32(monkeypatch, bf16):
    """Measured on an H200 (benchmarks/results/20261201-*-gpu-probe*.log): bf16 autocast slower than fp32 at
    batch 32."""
    from poolhead.run import plan as builder

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(builder, "cpu_computes_bf16", lambda: True)
    assert builder.resolve_precision("auto") == "32-true", "a GPU takes no CPU rule"
    assert builder.resolve_precision("auto", accelerator="cpu") == "bf16-mixed", "cpu asked: the CPU's rule"
    assert builder.resolve_precision("bf16-mixed") == "bf16-mixed", "a named precision is kept"


FAULTS = """
import resource, statistics, sys, torch
from poolhead.speed.memory import keep_freed_memory
kept = keep_freed_memory(sys.argv[1] == "on")
faults = []
for _ in range(7):  # MiniLM's word-embedding gradient: 47 MB, over glibc's largest mmap threshold, freed each time
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.zeros(30522, 384)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, int(statistics.median(faults)))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-fault counts and mallopt are Linux/glibc here")
def test_keep_freed_memory_reuses_a_large_block_without_page_faults():
    """keep_freed_memory=true (the default) is ~10% of a MiniLM bf16 training step on a 2-core EPYC
    (docs/speed.md); its mechanism: a freed 47 MB gradient is reused, not faulted in afresh each step."""
    def faults(arm: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", FAULTS, arm], capture_output=True, text=True, check=True)
        kept, count = out.stdout.split()
        return kept, int(count)

    kept, count = faults("on")
    if kept == "False":
        pytest.skip("not glibc: the allocator is left as it is")
    assert count < 500, f"{count} page faults per 47 MB allocation with freed memory kept"
    assert faults("off")[0] == "False", "keep_freed_memory=false changes nothing and says so"
