"""Presets respect the user: a data, mode or encoder set on the command line is never silently replaced or
mixed with a preset's settings for another option (the issue: `hparams_search=stsb_optuna data=demo` trained
on STS-B while the records said data=demo), and an Optuna study's direction follows the task when `monitor` is
null."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, compose_cfg

import poolhead
from poolhead.use.presets import PresetConflict, check_presets

DIRS = [poolhead.conf_dir()]


def test_a_user_option_that_would_get_the_presets_settings_is_refused():
    """stsb_optuna picks data=stsb and sets data.dir for it: data=demo would read STS-B's folder."""
    with pytest.raises(
        PresetConflict, match=r"hparams_search=stsb_optuna picks data=stsb and sets data\.dir"
    ):
        check_presets(
            {"hparams_search": "stsb_optuna", "data": "demo"},
            ["hparams_search=stsb_optuna", "data=demo"],
            DIRS,
        )


def test_a_nested_preset_is_read_through_its_defaults_list():
    """experiment=stsb_probe includes stsb_pooling, which picks data=stsb with its data.dir."""
    with pytest.raises(PresetConflict, match=r"experiment=stsb_probe picks data=stsb and sets data\.dir"):
        check_presets(
            {"experiment": "stsb_probe", "data": "demo"}, ["experiment=stsb_probe", "data=demo"], DIRS
        )


def test_the_user_wins_saying_so_when_no_preset_setting_is_left_over():
    """encoder=tiny in stsb_pooling: its encoder.fast_dropout is shared by every encoder (train.yaml's encoder
    block), so the user's encoder wins with a note; data.dir set by the user leaves nothing of the preset's
    data."""
    notes = check_presets(
        {"experiment": "stsb_pooling", "encoder": "tiny", "data": "demo"},
        ["experiment=stsb_pooling", "encoder=tiny", "data=demo", "data.dir=/some/where"],
        DIRS,
    )
    assert notes == [
        "encoder=tiny (command line) replaces experiment=stsb_pooling's encoder=minilm",
        "data=demo (command line) replaces experiment=stsb_pooling's data=stsb",
    ]
    assert (
        check_presets({"experiment": "stsb_pooling", "data": "stsb"}, ["experiment=stsb_pooling"], DIRS) == []
    )


def test_train_refuses_before_any_work(tmp_path):
    """End to end: the refusal comes before the run folder holds anything but Hydra's own files."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "hparams_search=stsb_optuna",
            "data=demo",
            "encoder=tiny",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "settings: hparams_search=stsb_optuna picks data=stsb" in proc.stderr, (
        proc.stderr
    )
    assert (
        not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "checkpoints").exists()
    )


@pytest.mark.parametrize(
    "overrides, direction",
    [
        ([], "maximize"),
        (["monitor=val/loss"], "minimize"),
        (["data=csv", "data.task=class"], "maximize"),
        (["data=csv", "data.task=multilabel"], "maximize"),
    ],
)
def test_an_optuna_studys_direction_needs_no_monitor(tmp_path, overrides, direction):
    """The bug it catches: a search of your own dying with a 60-line traceback unless monitor= is set,
    although the task knows its metric (val/spearman, val/accuracy, val/f1_micro: all maximized; val/loss
    minimized)."""
    from poolhead.sweep.optuna_sweep import study_direction

    cfg = compose_cfg(["hydra/sweeper=poolhead_optuna", "monitor=null", *overrides], tmp_path, hydra=True)
    assert cfg.hydra.sweeper.direction is None  # null in the yaml: the sweeper works it out
    assert study_direction(cfg.hydra.sweeper.direction, cfg.monitor) == direction
