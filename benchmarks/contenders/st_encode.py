"""Contender: SentenceTransformer.encode of the dev pairs with the untrained model (zero-shot cosine).

Timer: eval = model.encode() of both dev sides (batch 32, tokenization included, as in ST) + cosine, after one
untimed warm-up batch (the trained contenders' eval passes run warm, after training).
No training (--train/--epochs/--max-train are accepted for a uniform command line and ignored).
bf16: encode runs under torch.autocast("cpu", bfloat16); fp32 is ST's default.
"""

import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402


def main():
    args = common.contender_args(__doc__)
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(common.minilm_path(), device="cpu")
    model.max_seq_length = common.MAX_LENGTH
    d1, d2, gold = common.read_sts(args.dev)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext())
    with autocast:
        model.encode(d1[:common.BATCH_SIZE], batch_size=common.BATCH_SIZE)  # warm-up, not timed
    t0 = time.perf_counter()
    with autocast:
        e1 = model.encode(d1, batch_size=common.BATCH_SIZE, convert_to_tensor=True)
        e2 = model.encode(d2, batch_size=common.BATCH_SIZE, convert_to_tensor=True)
        cos = torch.nn.functional.cosine_similarity(e1.float(), e2.float())
    eval_seconds = time.perf_counter() - t0

    common.write_result(
        args.out, "st_encode", eval_pairs=len(gold), eval_seconds=eval_seconds,
        dev_spearman=common.spearman(cos, gold), versions=common.versions("sentence-transformers"),
        precision=args.precision,
    )


if __name__ == "__main__":
    main()
