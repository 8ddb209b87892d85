"""The data module: configs build it, batches are right, padding is small, order is restorable, the cache works."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import poolhead
from poolhead.core.hub import OfflineError
from poolhead.core.modes import Bi, Cross, Mode, Single
from poolhead.data import DemoSts, LengthGroupedBatchSampler, StsData, TableData, TaskSpec, TextDataModule, tokens

TOK = poolhead.minilm_path()


def build(conf_dir: Path, name: str, tmp_path: Path, mode: Mode | None = None, **overrides) -> TextDataModule:
    """What the app does: instantiate conf/data/<name>.yaml with the run's tokenizer, mode, max_length, seed, cache."""
    mode = mode or Cross()
    cfg = OmegaConf.merge(OmegaConf.load(conf_dir / "data" / f"{name}.yaml"), overrides)
    return instantiate(cfg, tokenizer=TOK, mode=mode, max_length=64, seed=7, cache_dir=str(tmp_path / "cache"))


def padding(loader) -> int:
    return sum(int((f["attention_mask"] == 0).sum()) for batch in loader for f in batch["features"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSts:
    dm = DemoSts(tokenizer=TOK, mode=Cross(), max_length=64, seed=0, cache_dir=tmp_path_factory.mktemp("cache"),
                 batch_size=16, eval_batch_size=32)
    dm.setup("fit")
    return dm


def test_every_config_builds_with_the_run_arguments(conf_dir: Path, tmp_path: Path) -> None:
    for path in sorted((conf_dir / "data").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        assert cfg._target_.startswith("poolhead.data.")
        assert not {"tokenizer", "mode", "max_length", "seed", "cache_dir"} & set(cfg), path.name
        mode = Single() if path.stem == "csv" else Cross()
        assert isinstance(build(conf_dir, path.stem, tmp_path, mode=mode), TextDataModule)


def test_demo_loads_offline_with_the_right_sizes(conf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dm = build(conf_dir, "demo", tmp_path)
    with caplog.at_level(logging.INFO, logger="poolhead.data"):
        dm.setup("fit")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for split, n, file in (("train", 300, "sts-train.csv"), ("val", 100, "sts-dev.csv"), ("test", 100, "sts-test.csv")):
        assert f"demo {split}: read {n} rows (" in logged and f"{file}), kept {n}, skipped 0" in logged
    assert dm.sizes == {"train": 300, "val": 100, "test": 100} and dm.has_test
    assert dm.task == TaskSpec("score", (0.0, 5.0), None, 3.0) and dm.task.monitor == "spearman"
    scores = pd_concat_labels(dm)
    assert scores.min() == 0.0 and scores.max() == 5.0 and (np.histogram(scores, bins=5, range=(0, 5))[0] > 30).all()
    assert dm.save_label_map(tmp_path / "labels.json") is None  # score task: no label map


def pd_concat_labels(dm: TextDataModule) -> np.ndarray:
    return np.concatenate([dm.rows(s)["label"].to_numpy() for s in ("train", "val", "test")])


def test_batches_follow_the_contract(demo: DemoSts) -> None:
    batch = next(iter(demo.train_dataloader()))
    assert set(batch) == {"features", "labels", "index"} and len(batch["features"]) == 1
    f = batch["features"][0]
    assert set(f) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(v.dtype == torch.long and v.shape == f["input_ids"].shape for v in f.values())
    assert batch["labels"].dtype == torch.float32 and batch["index"].dtype == torch.long
    assert f["attention_mask"].sum(1).max() == f["input_ids"].shape[1]  # padded to the longest in the batch
    rows = demo.rows("train")
    for j, i in enumerate(batch["index"].tolist()[:4]):  # each row is exactly tokenizer(text, text_pair)
        expect = demo.tokenizer(rows.text[i], rows.text_pair[i], truncation=True, max_length=64)["input_ids"]
        assert f["input_ids"][j][f["attention_mask"][j].bool()].tolist() == expect
        assert batch["labels"][j].item() == pytest.approx(rows.label[i])


def test_bi_mode_pads_each_side_on_its_own(tmp_path: Path) -> None:
    dm = DemoSts(tokenizer=TOK, mode=Bi(), max_length=64, seed=0, cache_dir=tmp_path, batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.predict_dataloader("test")))
    a, b = batch["features"]
    rows = dm.rows("test")
    i = batch["index"][0].item()
    assert a["input_ids"][0][a["attention_mask"][0].bool()].tolist() == dm.tokenizer(rows.text[i])["input_ids"]
    assert b["input_ids"][0][b["attention_mask"][0].bool()].tolist() == dm.tokenizer(rows.text_pair[i])["input_ids"]
    assert a["attention_mask"].sum(1).max() == a["input_ids"].shape[1]
    assert b["attention_mask"].sum(1).max() == b["input_ids"].shape[1]


def test_bi_eval_batches_go_by_the_longer_side(tmp_path: Path) -> None:
    """A bi batch pads both sides to one width (its longest side), so rows sort by the longer side, not by the two
    sides' sum: sorting by the sum pads STS-B dev to 1.42x its real tokens in batches of 128, by the longer side
    1.26x."""
    dm = DemoSts(tokenizer=TOK, mode=Bi(), max_length=64, seed=0, cache_dir=tmp_path, batch_size=8)
    dm.setup("fit")
    widths = torch.cat([torch.maximum(a["attention_mask"].sum(1), b["attention_mask"].sum(1))
                        for a, b in (batch["features"] for batch in dm.predict_dataloader("test"))])
    assert (widths[:-1] >= widths[1:]).all()


def test_wrong_mode_for_the_data_is_a_clear_error(conf_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data 'demo' holds text pairs, but mode=single.*mode=cross.*mode=bi"):
        DemoSts(tokenizer=TOK, mode=Single())
    with pytest.raises(ValueError, match=r"data 'csv' has one text per row, but mode=bi.*data.text_pair=COLUMN"):
        TableData(train="x.csv", tokenizer=TOK, mode=Bi())
    with pytest.raises(TypeError, match=r"mode must be a poolhead.core.modes.Mode"):
        DemoSts(tokenizer=TOK, mode="siamese")
    # through Hydra (which wraps it in an InstantiationException), the message survives
    with pytest.raises(Exception, match=r"data 'stsb' holds text pairs, but mode=single"):
        build(conf_dir, "stsb", tmp_path, mode=Single())
    with pytest.raises(Exception, match=r"data 'csv' has one text per row, but mode=cross"):
        build(conf_dir, "csv", tmp_path, mode=Cross())


def test_length_grouping_cuts_padding(demo: DemoSts) -> None:
    grouped, grouped_val = padding(demo.train_dataloader()), padding(demo.val_dataloader())
    demo.group_by_length = False
    try:
        shuffled, input_order_val = padding(demo.train_dataloader()), padding(demo.val_dataloader())
    finally:
        demo.group_by_length = True
    assert grouped < 0.25 * shuffled, (grouped, shuffled)
    assert grouped_val < 0.5 * input_order_val, (grouped_val, input_order_val)


@pytest.mark.real
def test_length_grouping_on_stsb(shared_data_dir: Path, tmp_path: Path) -> None:
    dm = StsData(dir=shared_data_dir / "stsb", tokenizer=TOK, mode=Cross(), max_length=128, seed=0,
                 cache_dir=tmp_path, batch_size=32)
    dm.setup("fit")
    grouped, tokens_total = padding(dm.train_dataloader()), int(dm._data["train"].lengths.sum())
    dm.group_by_length = False
    shuffled = padding(dm.train_dataloader())
    assert grouped < 0.1 * shuffled and grouped < 0.05 * tokens_total, (grouped, shuffled, tokens_total)


def test_eval_batches_put_back_in_input_order(demo: DemoSts) -> None:
    for split in ("val", "test"):
        batches = list(demo.predict_dataloader(split))
        index = torch.cat([b["index"] for b in batches])
        assert sorted(index.tolist()) == list(range(len(demo.rows(split))))  # each row exactly once
        lengths = torch.cat([b["features"][0]["attention_mask"].sum(1) for b in batches])
        assert (lengths[:-1] >= lengths[1:]).all()  # longest first
        labels = torch.cat([b["labels"] for b in batches])
        restored = torch.empty_like(labels)
        restored[index] = labels
        assert restored.tolist() == pytest.approx(demo.rows(split)["label"].tolist())


def test_val_loader_is_not_shuffled(demo: DemoSts) -> None:
    first = [b["index"].tolist() for b in demo.val_dataloader()]
    assert first == [b["index"].tolist() for b in demo.val_dataloader()]


def test_sampler_shuffles_per_epoch_and_covers_every_row() -> None:
    lengths = np.random.default_rng(0).integers(5, 60, size=1000)
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, seed=3, group_batches=10)
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    assert len(epoch0) == len(sampler) == 63
    assert sorted(i for b in epoch0 for i in b) == list(range(1000))
    sampler.sampler.set_epoch(0)  # Lightning calls batch_sampler.sampler.set_epoch(epoch)
    assert list(sampler) == epoch0
    assert list(sampler) != epoch0  # without set_epoch, the next pass is the next epoch
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    spread = [lengths[b].max() - lengths[b].min() for b in epoch0]
    assert np.mean(spread) < 10  # random batches of 16 from lengths 5..59 spread ~45
    dropped = LengthGroupedBatchSampler(lengths, batch_size=16, seed=3, drop_last=True)
    assert len(dropped) == len(list(dropped)) == 62


def test_second_setup_reads_the_token_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    encode = tokens.encode
    monkeypatch.setattr(tokens, "encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    make = lambda **k: DemoSts(**({"tokenizer": TOK, "mode": Cross(), "max_length": 64, "seed": 0,  # noqa: E731
                                   "cache_dir": tmp_path} | k))
    first = make()
    first.setup("fit")
    assert len(calls) == 3  # train, val, test
    second = make()
    second.setup("fit")
    assert len(calls) == 3, "second setup tokenized again"
    assert [b["features"][0]["input_ids"].tolist() for b in first.val_dataloader()] == \
           [b["features"][0]["input_ids"].tolist() for b in second.val_dataloader()]
    make(max_length=32).setup("fit")
    make(mode=Bi()).setup("fit")
    assert len(calls) == 9  # another max_length or mode is another cache entry
    assert len(list((tmp_path / "tokens").glob("*.npz"))) == 9 and not list((tmp_path / "tokens").glob(".tmp*"))


def test_broken_cache_file_is_remade(tmp_path: Path) -> None:
    DemoSts(tokenizer=TOK, mode=Cross(), max_length=16, seed=0, cache_dir=tmp_path).setup()
    for path in (tmp_path / "tokens").glob("*.npz"):
        path.write_bytes(b"not a zip")
    dm = DemoSts(tokenizer=TOK, mode=Cross(), max_length=16, seed=0, cache_dir=tmp_path)
    dm.setup()
    assert dm.sizes["train"] == 300 and next(iter(dm.val_dataloader()))["features"][0]["input_ids"].shape[1] <= 16


def test_setup_for_any_stage_and_twice(tmp_path: Path) -> None:
    dm = DemoSts(tokenizer=TOK, mode=Cross(), max_length=64, seed=0, cache_dir=tmp_path)
    with pytest.raises(RuntimeError, match="setup"):
        dm.task  # noqa: B018
    dm.setup("test")
    data = dm._data
    dm.setup("fit")
    dm.setup("predict")
    assert dm._data is data and dm.task.kind == "score"


def test_val_is_carved_from_train_by_seed(tmp_path: Path) -> None:
    folder = tmp_path / "stsb"
    folder.mkdir()
    (folder / "sts-train.csv").write_bytes((poolhead.data.DEMO_DIR / "sts-train.csv").read_bytes())
    made = [StsData(dir=folder, tokenizer=TOK, mode=Cross(), max_length=64, seed=s, cache_dir=tmp_path,
                    val_fraction=0.2) for s in (1, 1, 2)]
    for dm in made:
        dm.setup("fit")
    a, b, c = made
    assert a.counts["train"] == {"read": 300, "kept": 240, "skipped": 0, "to_val": 60}
    assert a.counts["val"] == {"read": 60, "kept": 60, "skipped": 0} and not a.has_test
    assert a.rows("val").equals(b.rows("val")) and not a.rows("val").equals(c.rows("val"))
    together = sorted(a.rows("train")["text"].tolist() + a.rows("val")["text"].tolist())
    assert together == sorted(StsData(dir=folder, tokenizer=TOK, mode=Cross()).read()["train"].text)
    assert a._splits["val"].where == sorted(a._splits["val"].where)  # val keeps file order


def test_class_task_batches_and_label_map(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("sentence,premise,gold\n" + "".join(f"s{i},p{i},{['yes', 'no', 'maybe'][i % 3]}\n"
                                                         for i in range(30)))
    cfg = dict(train=str(train), text="sentence", text_pair="premise", label="gold", task="class")
    dm = build(poolhead.conf_dir(), "csv", tmp_path, **cfg)
    dm.setup("fit")
    assert dm.task.label_names == ("maybe", "no", "yes") and dm.task.kind == "class"
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].dtype == torch.long
    names = [dm.task.label_names[y] for y in batch["labels"].tolist()]
    assert names == dm.rows("train")["label"][batch["index"].tolist()].tolist()
    assert json.loads(dm.save_label_map(tmp_path / "labels.json").read_text()) == {"0": "maybe", "1": "no", "2": "yes"}


def test_klue_sts_local_files(conf_dir: Path, tmp_path: Path) -> None:
    items = [{"guid": str(i), "sentence1": f"문장 {i}", "sentence2": f"다른 문장 {i}",
              "labels": {"label": i % 5, "real-label": i % 5 + 0.5, "binary-label": int(i % 5 >= 3)}}
             for i in range(40)]
    for split, n in (("train", 30), ("dev", 10)):
        (tmp_path / f"klue-sts-v1.1_{split}.json").write_text(json.dumps(items[:n], ensure_ascii=False))
    dm = build(conf_dir, "klue_sts", tmp_path, dir=str(tmp_path))
    dm.setup("fit")
    assert dm.sizes == {"train": 27, "val": 3, "test": 10} and dm.task.score_range == (0.0, 5.0)
    assert dm.rows("test")["label"].tolist() == [i % 5 + 0.5 for i in range(10)]


@pytest.mark.real
def test_stsb_from_config_with_dir(conf_dir: Path, shared_data_dir: Path, tmp_path: Path) -> None:
    dm = build(conf_dir, "stsb", tmp_path, dir=str(shared_data_dir / "stsb"))
    dm.setup("fit")
    assert dm.sizes == {"train": 5749, "val": 1500, "test": 0}


def test_korsts_needs_a_dir(conf_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data 'korsts' has no hub copy: pass data.dir=/path/to/korsts"):
        build(conf_dir, "korsts", tmp_path).setup()


def test_stsb_offline_without_dir_is_one_clear_error(conf_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf", raising=False)
    start = time.perf_counter()
    with pytest.raises(OfflineError, match=r"sentence-transformers/stsb(.|\n)*pass data.dir=/path/to/stsb"):
        build(conf_dir, "stsb", tmp_path).setup("fit")
    assert time.perf_counter() - start < 15


def test_hub_copies_are_read_like_files(conf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub path without the hub: load_dataset returns in-memory datasets with the hub schemas."""
    import datasets

    stsb = {"train": {"sentence1": ["a b", "c d", "e"] * 10, "sentence2": ["x", "y z", "w"] * 10,
                      "score": [0.76, 1.0, 0.0] * 10},
            "validation": {"sentence1": ["v"], "sentence2": ["u"], "score": [0.5]}}
    klue = {"train": {"sentence1": ["가"] * 20, "sentence2": ["나"] * 20,
                      "labels": [{"label": 3.0, "real-label": 3.2, "binary-label": 1}] * 20},
            "validation": {"sentence1": ["다", ""], "sentence2": ["라", "마"],
                           "labels": [{"label": 0.0, "real-label": 0.4, "binary-label": 0}] * 2}}
    hub = {"sentence-transformers/stsb": stsb, "klue/klue": klue}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: datasets.DatasetDict(
        {k: datasets.Dataset.from_dict(v) for k, v in hub[name].items()}))
    dm = build(conf_dir, "stsb", tmp_path)
    dm.setup("fit")
    assert dm.sizes == {"train": 30, "val": 1, "test": 0}
    assert dm.rows("train")["label"][:3].tolist() == [3.8, 5.0, 0.0] and dm.rows("val")["label"][0] == 2.5
    dm = build(conf_dir, "klue_sts", tmp_path)
    dm.setup("fit")
    assert dm.sizes == {"train": 18, "val": 2, "test": 1} and dm.counts["test"]["skipped"] == 1
    assert dm.rows("test").loc[0].tolist() == ["다", "라", 0.4]
