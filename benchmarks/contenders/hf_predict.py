"""Contender: plain HF AutoModel + mean pooling predict loop on the dev pairs (untrained, zero-shot cosine).

What a researcher writes by hand: batches of 32 sentences in file order, tokenizer(padding=True) per batch,
masked mean pooling, cosine. Timer: eval = the whole loop over both dev sides, tokenization included (as in
st_encode), after one untimed warm-up batch. No training (--train/--epochs/--max-train are accepted and
ignored).
"""

import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common


def main():
    args = common.contender_args(__doc__)
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = common.minilm_path()
    device = common.device()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval().to(device)
    d1, d2, gold = common.read_sts(args.dev)
    autocast = (torch.autocast(device, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext())

    def embed(sentences):
        out = []
        for i in range(0, len(sentences), common.BATCH_SIZE):
            batch = tok(sentences[i:i + common.BATCH_SIZE], padding=True, truncation=True,
                        max_length=common.MAX_LENGTH, return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))
        return torch.cat(out)

    with torch.inference_mode(), autocast:
        embed(d1[:common.BATCH_SIZE])  # warm-up, not timed
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast:
        cos = torch.nn.functional.cosine_similarity(embed(d1), embed(d2)).cpu()
    eval_seconds = time.perf_counter() - t0

    common.write_result(
        args.out, "hf_predict", eval_pairs=len(gold), eval_seconds=eval_seconds,
        dev_spearman=common.spearman(cos, gold), versions=common.versions(), precision=args.precision,
    )


if __name__ == "__main__":
    main()
