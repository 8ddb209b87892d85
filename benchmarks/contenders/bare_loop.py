"""Contender: bare PyTorch loop with the math of poolhead's cross-encoder step (the framework-overhead floor).

AutoModel MiniLM -> CLS token -> Linear(384, 1) -> MSE against labels/5; fused AdamW (no weight decay on biases and
LayerNorm), gradients clipped to norm 1; linear warm-up (int(10% of steps)) and decay from transformers.get_scheduler;
length-grouped batches (shuffled groups of 50 batches, each sorted by length, as poolhead's and HF's samplers),
dynamic padding; --precision bf16 runs forward+loss under torch.autocast("cpu", bf16).

Timers: train = the epoch loop (padding of each batch included; tokenization done before, not timed), plus the
median seconds per optimizer step after the first few (warm-up) steps; eval = dev predictions in file order,
batch 32, dynamic padding (tokenization done before, not timed). Model load is outside both.
"""

import contextlib
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common

SKIP_STEPS = 5  # steps left out of the per-step median (first-call allocations, oneDNN kernel selection)


def grouped_batches(lengths, batch_size, generator):
    import torch

    perm = torch.randperm(len(lengths), generator=generator).tolist()
    mega = batch_size * 50
    order = [i for k in range(0, len(perm), mega) for i in sorted(perm[k:k + mega], key=lambda j: -lengths[j])]
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def main():
    args = common.contender_args(__doc__)
    import torch
    from transformers import AutoModel, AutoTokenizer, get_scheduler

    common.seed_everything()
    path = common.minilm_path()
    tok, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    head = torch.nn.Linear(encoder.config.hidden_size, 1)
    named = list(encoder.named_parameters()) + list(head.named_parameters())
    params = [p for _, p in named]
    no_decay = [p for n, p in named if n.endswith("bias") or "norm" in n.lower()]
    decay = [p for n, p in named if not (n.endswith("bias") or "norm" in n.lower())]
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext())

    def encode(file, limit=None):
        s1, s2, y = common.read_sts(file, limit)
        feats = tok(s1, s2, truncation=True, max_length=common.MAX_LENGTH)
        return [{k: feats[k][i] for k in feats} for i in range(len(y))], y

    def forward(items):
        batch = tok.pad(items, return_tensors="pt")
        with autocast:
            cls = encoder(**batch).last_hidden_state[:, 0]
            return head(cls).squeeze(-1).float()

    train, y_train = encode(args.train, args.max_train)
    dev, y_dev = encode(args.dev)
    lengths = [len(f["input_ids"]) for f in train]
    steps_per_epoch = math.ceil(len(train) / common.BATCH_SIZE)
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": common.WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}], lr=common.LR, fused=True)
    sched = get_scheduler("linear", opt, num_warmup_steps=int(common.WARMUP_RATIO * total),
                          num_training_steps=total)
    gen = torch.Generator().manual_seed(common.SEED)

    encoder.train(), head.train()
    step_seconds = []
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        for idx in grouped_batches(lengths, common.BATCH_SIZE, gen):
            ts = time.perf_counter()
            pred = forward([train[i] for i in idx])
            loss = torch.nn.functional.mse_loss(pred, torch.tensor([y_train[i] / 5 for i in idx]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, common.MAX_GRAD_NORM)
            opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
            step_seconds.append(time.perf_counter() - ts)
    train_seconds = time.perf_counter() - t0

    encoder.eval(), head.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        pred = torch.cat([forward(dev[k:k + common.BATCH_SIZE]) for k in range(0, len(dev), common.BATCH_SIZE)])
    eval_seconds = time.perf_counter() - t0

    timed = step_seconds[SKIP_STEPS:] if len(step_seconds) > 2 * SKIP_STEPS else step_seconds
    common.write_result(
        args.out, "bare_loop", train_pairs=len(train) * args.epochs, train_seconds=train_seconds,
        eval_pairs=len(dev), eval_seconds=eval_seconds, dev_spearman=common.spearman(pred * 5, y_dev),
        versions=common.versions(), precision=args.precision, optimizer_steps=len(step_seconds),
        step_seconds_median=statistics.median(timed), step_seconds_skipped=len(step_seconds) - len(timed),
    )


if __name__ == "__main__":
    main()
