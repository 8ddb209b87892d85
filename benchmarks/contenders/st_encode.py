"""Contender: SentenceTransformer.encode of the dev pairs with the untrained model (zero-shot cosine).

Timer: eval = model.encode() of both dev sides (batch 32, tokenization included, as in ST) + cosine, after one
untimed warm-up batch (the trained contenders' eval passes run warm, after training).
No training (--train/--epochs/--max-train are accepted for a uniform command line and ignored).
bf16: encode runs under torch.autocast(bfloat16) on its device; fp32 is ST's default.
"""

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common


def main():
    args = common.contender_args(__doc__)
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(common.minilm_path(), device=common.device())
    model.max_seq_length = common.MAX_LENGTH
    d1, d2, gold = common.read_sts(args.dev)
    autocast = (torch.autocast(common.device(), dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())
    with autocast:
        model.encode(d1[:common.BATCH_SIZE], batch_size=common.BATCH_SIZE)  # warm-up, not timed
    eval_seconds, dev_spearman = common.st_dev_spearman(model, d1, d2, gold, args.precision)

    common.write_result(
        args.out, "st_encode", eval_pairs=len(gold), eval_seconds=eval_seconds,
        dev_spearman=dev_spearman, versions=common.versions("sentence-transformers"),
        precision=args.precision,
    )


if __name__ == "__main__":
    main()
