"""Is choosing queries by ensemble disagreement worth it? (Christiano et al. 2017, section 2.2.4)

For each seed: sample one pool of candidate pairs from the base policy (embedded model,
sentiment task), a held-out set of pairs, and n continuations for a set of evaluation prompts.
Then, for each strategy, label pairs with the simulated rater up to each label count and
train a reward-model ensemble on them:

- ``random``: the first N pairs of a shuffled pool;
- ``disagreement``: the first 50 as random, then each next batch is the pool pairs on which the
  ensemble trained at the previous count disagrees most (variance of its members' predicted
  preference, ``rlhflab.feedback.label.queries.preference_variance``).

At every count it records the ensemble's accuracy at ordering held-out pairs as the gold reward
does (gold ties left out) and the gold reward of best-of-n with that reward model (the
continuation the model scores highest of n, per prompt). It writes a figure and a JSON file,
and prints the labels each strategy needs to reach the accuracy random reaches at its largest
count (linear interpolation between counts; ``>max`` when not reached).

    .venv/bin/python bench/bench_query_selection.py [--seeds 0 1 2] [--counts 50 100 200 500 1000]
        [--out runs/query_selection]

Reward models are trained for max(--epochs, --min-steps steps) so that 50 labels get more than
three optimiser steps. Takes about 26 minutes per seed on 2 CPU cores with the defaults (MiniLM reward
models); ``--quick`` is
a minutes-long smoke version.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from rlhflab.core.comparison import write_pairs
from rlhflab.core.config import build
from rlhflab.feedback.label.queries import QueryConfig, candidate_pairs, preference_variance
from rlhflab.feedback.simulated import SimulatedRater
from rlhflab.models.loading import EMBEDDED, load_policy
from rlhflab.models.sampling import sample
from rlhflab.pipeline import stages
from rlhflab.reward.model import RewardModel
from rlhflab.reward.train import RewardTrainConfig
from rlhflab.run.rundir import RunDir
from rlhflab.tasks import load_task


def pairs_from_pool(model, tokenizer, task, n, generator, max_new_tokens):
    """Up to ``n`` candidate pairs (empty and identical ones dropped) with their gold scores."""
    config = build(QueryConfig, count=n, max_new_tokens=max_new_tokens, temperature=0.7)
    return candidate_pairs(model, tokenizer, task, n, config, generator, progress=False)


def label(rows, rater, generator):
    return [rater.compare(r["prompt"], r["a"], r["b"], r["gold_a"], r["gold_b"], generator) for r in rows]


def train(model_name, pairs, config, workdir):
    """A reward model trained through the pipeline, as 'rlhflab reward train' does."""
    run = RunDir(Path(tempfile.mkdtemp(dir=workdir)))
    write_pairs(run / RunDir.PAIRS, pairs)
    stages.reward_train(run, model_name, run / RunDir.PAIRS, config, progress=False)
    return RewardModel.load(run / RunDir.REWARD_MODEL)


def gold_accuracy(reward, heldout):
    known = [r for r in heldout if r["gold_a"] != r["gold_b"]]
    prompts = [r["prompt"] for r in known]
    ra = reward(prompts, [r["a"] for r in known])
    rb = reward(prompts, [r["b"] for r in known])
    gold = torch.tensor([r["gold_a"] - r["gold_b"] for r in known])
    return float(((ra - rb > 0) == (gold > 0)).float().mean())


def best_of_n_gold(reward, prompts, candidates, golds, n):
    """Mean gold of the highest-scored of ``n`` continuations per prompt (``candidates``: [P][n])."""
    flat_p = [p for p in prompts for _ in range(n)]
    scores = reward(flat_p, [c for cs in candidates for c in cs]).view(len(prompts), n)
    best = scores.argmax(1)
    return float(torch.tensor([golds[i][j] for i, j in enumerate(best.tolist())]).mean())


def run_seed(seed, args, workdir):
    task = load_task("sentiment")
    model, tokenizer = load_policy(args.model)
    model.eval()
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    pool = pairs_from_pool(model, tokenizer, task, args.pool, g, args.max_new_tokens)
    heldout = pairs_from_pool(model, tokenizer, task, args.heldout, g, args.max_new_tokens)
    eval_prompts = task.eval_prompts[: args.bon_prompts]
    candidates = [[] for _ in eval_prompts]
    for k in range(args.n):
        texts = sample(
            model, tokenizer, eval_prompts, max_new_tokens=args.max_new_tokens, seed=seed * 1000 + k, temperature=0.7
        ).responses
        for i, t in enumerate(texts):
            candidates[i].append(t)
    golds = [task.gold([p] * args.n, cs) for p, cs in zip(eval_prompts, candidates)]
    print(
        f"seed {seed}: pool {len(pool)}, held-out {len(heldout)} pairs, {args.n} x {len(eval_prompts)} best-of-n candidates ({time.time() - t0:.0f} s)"
    )
    rater = SimulatedRater()
    config = build(
        RewardTrainConfig,
        ensemble=args.ensemble,
        backbone=args.backbone,
        epochs=args.epochs,
        val_fraction=0.0,
        seed=seed,
        eval_every=10**6,
        checkpoint_every=10**6,
    )
    base_gold = float(torch.tensor([gs[0] for gs in golds]).mean())
    results = {"random": [], "disagreement": [], "base_gold": base_gold}
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed)).tolist()
    for strategy in ("random", "disagreement"):
        rg = torch.Generator().manual_seed(seed + 17)
        chosen: list[int] = []
        labelled = []
        reward = None
        for count in args.counts:
            count = min(count, len(pool))
            if strategy == "random" or reward is None:
                new = [i for i in order if i not in set(chosen)][: count - len(chosen)]
            else:
                taken = set(chosen)
                rest = [i for i in range(len(pool)) if i not in taken]
                prompts = [pool[i]["prompt"] for i in rest]
                var = preference_variance(
                    reward.member_scores(prompts, [pool[i]["a"] for i in rest]),
                    reward.member_scores(prompts, [pool[i]["b"] for i in rest]),
                )
                top = torch.argsort(var, descending=True, stable=True)[: count - len(chosen)].tolist()
                new = [rest[j] for j in top]
            chosen += new
            labelled += label([pool[i] for i in new], rater, rg)
            t1 = time.time()
            batch = min(16, len(labelled))
            epochs = max(args.epochs, args.min_steps * batch / len(labelled))  # few labels: more passes
            reward = train(args.model, labelled, replace(config, pairs_per_step=batch, epochs=epochs), workdir)
            acc = gold_accuracy(reward, heldout)
            bon = best_of_n_gold(reward, eval_prompts, candidates, golds, args.n)
            results[strategy].append({"labels": count, "gold_accuracy": acc, "best_of_n_gold": bon})
            print(
                f"  {strategy:12} {count:5} labels: held-out gold accuracy {acc:.3f}, best-of-{args.n} gold {bon:.3f} ({time.time() - t1:.0f} s)"
            )
    return results


def labels_to_reach(curve, target):
    """Labels at which ``curve`` (list of {labels, gold_accuracy}) first reaches ``target``, interpolated."""
    prev = None
    for point in curve:
        if point["gold_accuracy"] >= target:
            if prev is None:
                return point["labels"]
            x0, y0, x1, y1 = prev["labels"], prev["gold_accuracy"], point["labels"], point["gold_accuracy"]
            return x0 + (target - y0) * (x1 - x0) / (y1 - y0)
        prev = point
    return None


def figure(all_results, counts, n, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, ax, label in (
        ("gold_accuracy", axes[0], "held-out accuracy (gold order)"),
        ("best_of_n_gold", axes[1], f"gold reward of best-of-{n}"),
    ):
        for strategy, color in (("random", "tab:blue"), ("disagreement", "tab:orange")):
            ys = np.array([[p[key] for p in r[strategy]] for r in all_results])
            xs = [p["labels"] for p in all_results[0][strategy]]
            for row in ys:
                ax.plot(xs, row, color=color, alpha=0.25, lw=1)
            ax.plot(xs, ys.mean(0), "o-", color=color, label=f"{strategy} (mean of {len(ys)} seeds)", lw=2)
        if key == "best_of_n_gold":
            ax.axhline(np.mean([r["base_gold"] for r in all_results]), color="k", ls=":", label="base policy (n = 1)")
        ax.set(xscale="log", xlabel="labels", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("reward model vs number of labels")
    axes[1].set_title("what the reward model buys at sampling time")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=EMBEDDED)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--counts", type=int, nargs="+", default=[50, 100, 200, 500, 1000])
    p.add_argument("--pool", type=int, default=2500, help="candidate pairs sampled per seed")
    p.add_argument("--heldout", type=int, default=400)
    p.add_argument("--ensemble", type=int, default=3)
    p.add_argument("--backbone", default="auto", help="the reward models' backbone (the demo's: auto = minilm)")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the labels (at least --min-steps steps)")
    p.add_argument("--min-steps", type=int, default=30, help="optimiser steps of 16 pairs, at least")
    p.add_argument("--n", type=int, default=8, help="best-of-n")
    p.add_argument("--bon-prompts", type=int, default=200)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--out", type=Path, default=Path("runs/query_selection"))
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.seeds, args.counts, args.pool, args.heldout = [0], [32, 64], 200, 64
        args.bon_prompts, args.ensemble, args.min_steps = 16, 2, 4
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        all_results = [run_seed(s, args, workdir) for s in args.seeds]
    top = max(args.counts)
    target = sum(r["random"][-1]["gold_accuracy"] for r in all_results) / len(all_results)
    mean_curve = {
        s: [
            {
                "labels": c["labels"],
                "gold_accuracy": sum(r[s][i]["gold_accuracy"] for r in all_results) / len(all_results),
            }
            for i, c in enumerate(all_results[0][s])
        ]
        for s in ("random", "disagreement")
    }
    need = {s: labels_to_reach(mean_curve[s], target) for s in mean_curve}
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "seeds": all_results,
        "mean_accuracy": mean_curve,
        "target_accuracy": target,
        "labels_to_reach_target": need,
        "ratio_disagreement_over_random": (need["disagreement"] / need["random"]) if need["disagreement"] else None,
        "seconds": round(time.time() - started),
    }
    (args.out / "query_selection.json").write_text(json.dumps(summary, indent=2))
    figure(all_results, args.counts, args.n, args.out / "query_selection.png")
    print(
        "\nmean held-out gold accuracy by labels: "
        + "; ".join(
            f"{s}: " + ", ".join(f"{c['labels']}→{c['gold_accuracy']:.3f}" for c in mean_curve[s]) for s in mean_curve
        )
    )
    fmt = lambda x: f">{top}" if x is None else f"{x:.0f}"  # noqa: E731
    print(
        f"labels to reach random's accuracy at {top} ({target:.3f}): random {fmt(need['random'])}, disagreement {fmt(need['disagreement'])}"
    )
    if summary["ratio_disagreement_over_random"] is not None:
        print(f"ratio disagreement / random: {summary['ratio_disagreement_over_random']:.2f}")
    print(f"wrote {args.out / 'query_selection.png'} and {args.out / 'query_selection.json'} ({summary['seconds']} s)")


if __name__ == "__main__":
    main()
