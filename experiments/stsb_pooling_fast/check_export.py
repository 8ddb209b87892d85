"""The fast study's bi finalist served outside poolhead: its sentence-transformers export (attention pooling, a
custom module) against poolhead's own scores on all STS-B dev pairs.

    python train.py experiment=stsb_pooling_fast mode=bi pooling=attention head=regression seed=1 \\
        hydra.run.dir=logs/stsb_fast_bi_attention
    poolhead export logs/stsb_fast_bi_attention --to exported/stsb_bi_attention
    python experiments/stsb_pooling_fast/check_export.py [RUN] [EXPORT]   # > export-check.txt
"""

import os
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer

import poolhead

run = sys.argv[1] if len(sys.argv) > 1 else "logs/stsb_fast_bi_attention"
export = sys.argv[2] if len(sys.argv) > 2 else "exported/stsb_bi_attention"
dev = Path(os.environ.get("POOLHEAD_DATA_DIR", "../shared/data")) / "stsb" / "sts-dev.csv"
rows = [line.rstrip("\n").split("\t") for line in dev.open(encoding="utf-8")]
a, b, gold = [r[5] for r in rows], [r[6] for r in rows], np.array([float(r[4]) for r in rows])
model = poolhead.load(run, device="cpu")
pred = np.asarray(model.predict(list(zip(a, b, strict=True)), precision="32-true"))
u0, v0 = model.encode(a, precision="32-true"), model.encode(b, precision="32-true")
st = SentenceTransformer(export, trust_remote_code=True, device="cpu")
u, v = st.encode(a, batch_size=64), st.encode(b, batch_size=64)
cos = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
print(f"run {run}, export {export}, {len(a)} dev pairs ({dev})")
print(f"max |sentence-transformers vector - poolhead encode|: {np.abs(u - u0).max():.2e} (text), "
      f"{np.abs(v - v0).max():.2e} (text_pair)")
print(f"dev Spearman: poolhead predict {spearmanr(pred, gold)[0]:.4f}, sentence-transformers cos(u, v) "
      f"{spearmanr(cos, gold)[0]:.4f}")
