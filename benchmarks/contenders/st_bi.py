"""Contender: sentence-transformers bi-encoder fine-tune (SentenceTransformerTrainer + CosineSimilarityLoss, labels/5).

Timers: train = trainer.train(), which tokenizes each batch inside its collator (inherent to ST, so included);
eval = model.encode() of both dev sides (tokenization included, as in ST) + cosine. Model load is outside both.
bf16: training with bf16=True (CPU autocast); encode runs under torch.autocast("cpu", bfloat16).
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common


def main():
    args = common.contender_args(__doc__)
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    common.seed_everything()
    model = SentenceTransformer(common.minilm_path(), device=common.device())
    model.max_seq_length = common.MAX_LENGTH
    s1, s2, y = common.read_sts(args.train, args.max_train)
    train_ds = Dataset.from_dict({"sentence1": s1, "sentence2": s2, "score": [v / 5 for v in y]})

    with tempfile.TemporaryDirectory() as tmp:
        targs = SentenceTransformerTrainingArguments(
            output_dir=tmp, num_train_epochs=args.epochs, per_device_train_batch_size=common.BATCH_SIZE,
            learning_rate=common.LR, weight_decay=common.WEIGHT_DECAY, max_grad_norm=common.MAX_GRAD_NORM,
            lr_scheduler_type="linear", warmup_steps=common.WARMUP_RATIO, seed=common.SEED,
            use_cpu=common.device() == "cpu",
            bf16=args.precision == "bf16", dataloader_num_workers=0, report_to="none", save_strategy="no",
            eval_strategy="no", logging_strategy="no", disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=train_ds,
                                             loss=CosineSimilarityLoss(model))
        t0 = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - t0

    model.eval()
    d1, d2, gold = common.read_sts(args.dev)
    eval_seconds, dev_spearman = common.st_dev_spearman(model, d1, d2, gold, args.precision)

    common.write_result(
        args.out, "st_bi", train_pairs=len(y) * args.epochs, train_seconds=train_seconds,
        eval_pairs=len(gold), eval_seconds=eval_seconds, dev_spearman=dev_spearman,
        versions=common.versions("sentence-transformers", "accelerate", "datasets"), precision=args.precision,
        optimizer_steps=trainer.state.global_step,
    )


if __name__ == "__main__":
    main()
