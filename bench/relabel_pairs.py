"""Relabel sampled pairs with another simulated rater: the same continuations, judged with a different bias.

The pairs' gold scores (``gold_chosen``, ``gold_rejected``, written by ``feedback simulate``) are what the new rater
perceives, plus its biases; it draws its answer with a seeded generator. Used by docs/real-model.md to give the
smollm2 demo's comparisons to a length-biased rater without sampling them again.

    .venv/bin/python bench/relabel_pairs.py runs/demo_smollm2_preset_s0/pairs.jsonl runs/smollm2_length/pairs.jsonl \
        --length-bias 0.05 --seed 0
"""

from __future__ import annotations

import argparse

import torch

from rlhflab.core.comparison import read_pairs, write_pairs
from rlhflab.core.errors import DataError
from rlhflab.feedback.simulated import SimulatedRater


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pairs")
    parser.add_argument("out")
    parser.add_argument("--length-bias", type=float, default=0.0)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--random-rate", type=float, default=0.1)
    parser.add_argument("--name", default="length")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rater = SimulatedRater(args.temperature, args.random_rate, length_bias=args.length_bias, name=args.name)
    generator = torch.Generator().manual_seed(args.seed)
    out, longer_chosen, flipped = [], 0, 0
    for i, pair in enumerate(read_pairs(args.pairs), start=1):
        if "gold_chosen" not in pair.scores or "gold_rejected" not in pair.scores:
            raise DataError(args.pairs, "has no gold_chosen/gold_rejected scores to relabel from", line=i)
        new = rater.compare(pair.prompt, pair.chosen, pair.rejected, pair.scores["gold_chosen"],
                            pair.scores["gold_rejected"], generator)  # fmt: skip
        if new is None:
            continue
        flipped += new.chosen != pair.chosen
        longer_chosen += len(new.chosen.split()) > len(new.rejected.split())
        out.append(new)
    write_pairs(args.out, out)
    print(f"relabelled {len(out)} pairs -> {args.out}: {flipped} changed side, the longer one chosen in "
          f"{longer_chosen / max(len(out), 1):.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
