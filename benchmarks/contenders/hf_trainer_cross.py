"""Contender: HF Trainer cross-encoder regression on STS-B, as run_glue.py does it (num_labels=1, labels 0-5).

Timers: train = trainer.train() (tokenization is done before, with datasets.map, and not timed);
eval = trainer.predict(dev) on the pre-tokenized dev set. Model load and tokenization are outside both timers.
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common


def extra(p):
    p.add_argument("--padding", choices=["longest_grouped", "max_length"], default="longest_grouped",
                   help="longest_grouped: dynamic padding + length-grouped sampler; max_length: pad to 128 (run_glue)")


def main():
    args = common.contender_args(__doc__, extra)
    import numpy as np
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    common.seed_everything()
    path = common.minilm_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)  # regression -> MSELoss

    pad = "max_length" if args.padding == "max_length" else False

    def dataset(file, limit=None):
        s1, s2, y = common.read_sts(file, limit)
        ds = Dataset.from_dict({"sentence1": s1, "sentence2": s2, "label": y})
        return ds.map(lambda b: tok(b["sentence1"], b["sentence2"], padding=pad, truncation=True,
                                    max_length=common.MAX_LENGTH),
                      batched=True, remove_columns=["sentence1", "sentence2"])

    train_ds, dev_ds = dataset(args.train, args.max_train), dataset(args.dev)

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, num_train_epochs=args.epochs, per_device_train_batch_size=common.BATCH_SIZE,
            per_device_eval_batch_size=common.BATCH_SIZE, learning_rate=common.LR, weight_decay=common.WEIGHT_DECAY,
            max_grad_norm=common.MAX_GRAD_NORM, lr_scheduler_type="linear", warmup_steps=common.WARMUP_RATIO,
            # transformers 5.x: group_by_length=True became train_sampling_strategy="group_by_length"
            train_sampling_strategy="group_by_length" if args.padding == "longest_grouped" else "random",
            seed=common.SEED, use_cpu=common.device() == "cpu", bf16=args.precision == "bf16", dataloader_num_workers=0,
            report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=train_ds, processing_class=tok,
                          data_collator=DataCollatorWithPadding(tok))
        t0 = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - t0

        t0 = time.perf_counter()
        out = trainer.predict(dev_ds)
        eval_seconds = time.perf_counter() - t0

    pred = np.asarray(out.predictions).reshape(-1)
    # In transformers 5.x, train_sampling_strategy="group_by_length" also makes predict() use a LengthGroupedSampler,
    # so predictions come back shuffled; label_ids come back in the same order, so score against those.
    in_file_order = bool(np.allclose(out.label_ids, dev_ds["label"]))
    common.write_result(
        args.out, f"hf_trainer_cross[{args.padding}]",
        train_pairs=len(train_ds) * args.epochs, train_seconds=train_seconds,
        eval_pairs=len(dev_ds), eval_seconds=eval_seconds,
        dev_spearman=common.spearman(pred, out.label_ids),
        versions=common.versions("accelerate", "datasets"),
        precision=args.precision, padding=args.padding, predict_order_is_file_order=in_file_order,
        dev_spearman_vs_file_order_labels=common.spearman(pred, dev_ds["label"]),
        optimizer_steps=trainer.state.global_step,
    )


if __name__ == "__main__":
    main()
