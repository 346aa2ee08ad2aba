"""How well the demo's reward model learns gold, against the number of labels it is trained on.

    .venv/bin/python bench/reward_label_curve.py                       # 250 ... 16000 labels, runs/label-curve
    .venv/bin/python bench/reward_label_curve.py --labels 250 500 1000 2000 4000 --pairs 9000   # docs/demo.md's
    .venv/bin/python bench/reward_label_curve.py --labels 250 500 1000 2000 4000 --pairs 9000 --backbone model

One set of simulated comparisons is drawn from the embedded base policy with the demo's rater
(``rlhflab feedback simulate`` defaults: Bradley-Terry temperature 0.1, 10% random answers);
the first ``--test`` pairs are a fixed test set, and a reward model with the demo's training
defaults (``RewardTrainConfig()``; ``--backbone``, ``--lr``, ``--epochs``, ``--head-lr-scale`` change them) is trained on the first N of the
rest for each N. Printed per
N, on the test set: accuracy against the rater's labels, gold-order accuracy on pairs whose gold
scores differ (what ``val/gold_accuracy`` reports) and on clearly separated pairs
(|gold difference| >= 0.5), and the Spearman correlation of proxy and gold on the test pairs'
texts (base samples); plus the training time. A run directory per N is kept, so an interrupted
curve continues.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000, 8000, 16000])
    p.add_argument("--test", type=int, default=1000, help="pairs held out as the common test set")
    p.add_argument("--runs", type=Path, default=Path("runs/label-curve"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default=None, help="the reward model's backbone (default: the demo's, 'auto')")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the demo's)")
    p.add_argument("--epochs", type=float, default=None, help="passes over the pairs (default: the demo's)")
    p.add_argument("--head-lr-scale", type=float, default=None, help="the head's learning-rate multiple")
    p.add_argument(
        "--pairs", type=int, default=0, help="comparisons to draw (default: --test + the largest N, plus 5%% for drops)"
    )
    args = p.parse_args()

    from rlhflab.core.comparison import read_pairs, write_pairs
    from rlhflab.core.config import build
    from rlhflab.core.losses import preference_accuracy
    from rlhflab.evaluation.diagnostics.stats import spearman
    from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
    from rlhflab.models.loading import EMBEDDED
    from rlhflab.pipeline import stages
    from rlhflab.pipeline.setup import Setup
    from rlhflab.reward.bradley_terry import SEPARATED, gold_order_accuracy
    from rlhflab.reward.model import META, RewardModel
    from rlhflab.reward.train import RewardTrainConfig
    from rlhflab.run.rundir import RunDir

    pool = RunDir(args.runs / "pool")
    need = args.pairs or math.ceil(1.05 * (args.test + max(args.labels)))
    if not (pool / RunDir.PAIRS).is_file():
        stages.feedback_simulate(pool, Setup.resolve(pool, EMBEDDED, "sentiment"),
                                 build(SimulateConfig, pairs=need, seed=args.seed), SimulatedRater())  # fmt: skip
    pairs = read_pairs(pool / RunDir.PAIRS)
    test, train = pairs[: args.test], pairs[args.test :]
    ties = sum(p.scores["gold_chosen"] == p.scores["gold_rejected"] for p in pairs) / len(pairs)
    print(f"{len(pairs)} pairs ({need} drawn); gold ties {ties:.1%}; test set {len(test)} pairs")

    base = RewardTrainConfig()
    config = replace(
        base,
        val_fraction=0.0,  # every pair trains (the common test set measures)
        run=replace(base.run, seed=args.seed),
        backbone=args.backbone or base.backbone,
        epochs=args.epochs or base.epochs,
        optimizer=replace(base.optimizer, lr=args.lr or base.optimizer.lr),
        head_lr_scale=args.head_lr_scale or base.head_lr_scale,
    )
    tag = f"-{config.backbone.replace('/', '_')}-lr{config.optimizer.lr:g}-ep{config.epochs:g}-head{config.head_lr_scale:g}"
    print(
        f"backbone {config.backbone}, lr {config.optimizer.lr:g} (head x{config.head_lr_scale:g}), "
        f"{config.epochs:g} epochs"
    )
    rows = []
    for n in args.labels:
        if n > len(train):
            print(f"N = {n}: only {len(train)} training pairs; skipped")
            continue
        run = RunDir(args.runs / f"labels-{n}{tag}")
        if not (run / RunDir.REWARD_MODEL / META).is_file():
            write_pairs(run / RunDir.PAIRS, train[:n])
            start = time.time()
            stages.reward_train(run, EMBEDDED, run / RunDir.PAIRS, config)
            (run / "seconds.txt").write_text(f"{time.time() - start:.0f}\n")
        rm = RewardModel.load(run / RunDir.REWARD_MODEL)
        prompts = [p.prompt for p in test]
        rc = rm(prompts, [p.chosen for p in test])
        rr = rm(prompts, [p.rejected for p in test])
        margin = rc - rr
        gold_diff = torch.tensor([p.scores["gold_chosen"] - p.scores["gold_rejected"] for p in test])
        acc = float(preference_accuracy(margin, torch.tensor([p.label for p in test])))
        gold = gold_order_accuracy(margin, gold_diff)
        gold_acc, sep_acc = gold["val/gold_accuracy"], gold["val/gold_accuracy_separated"]
        known, sep = gold_diff != 0, gold_diff.abs() >= SEPARATED  # (the pair counts printed below)
        scores = torch.cat([rc, rr]).tolist()
        golds = [p.scores["gold_chosen"] for p in test] + [p.scores["gold_rejected"] for p in test]
        rho = spearman(scores, golds)
        seconds = float((run / "seconds.txt").read_text()) if (run / "seconds.txt").is_file() else math.nan
        rows.append({"labels": n, "accuracy": acc, "gold_accuracy": gold_acc, "separated_accuracy": sep_acc,
                     "spearman": rho, "pairs_differing": int(known.sum()), "pairs_separated": int(sep.sum()),
                     "seconds": seconds})  # fmt: skip
    (args.runs / f"curve{tag}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| labels | accuracy (rater's labels) | gold order (gold differs) | gold order (gold 0.5 or more apart) "
          "| Spearman proxy–gold | train time |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['labels']} | {r['accuracy']:.3f} | {r['gold_accuracy']:.3f} | {r['separated_accuracy']:.3f} "
              f"| {r['spearman']:.3f} | {r['seconds']:.0f} s |")  # fmt: skip
    print(f"(test set: {len(test)} pairs, {rows[0]['pairs_differing'] if rows else 0} with differing gold, "
          f"{rows[0]['pairs_separated'] if rows else 0} clearly separated)")  # fmt: skip


if __name__ == "__main__":
    main()
