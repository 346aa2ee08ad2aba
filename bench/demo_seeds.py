"""Run ``rlhflab demo`` for several seeds and print the results table of docs/demo.md.

    .venv/bin/python bench/demo_seeds.py              # seeds 0 1 2, runs/demo-seed-<s>
    .venv/bin/python bench/demo_seeds.py --table-only # re-print the table from existing runs

Each run's wall time, gold reward of base and tuned policy (mean ± standard error over the
held-out prompts), proxy reward, KL to the base policy and distinct-2 are read from its
``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args()

    seconds: dict[int, float] = {}
    for seed in args.seeds:
        run = args.runs / f"demo-seed-{seed}"
        if args.table_only:
            continue
        start = time.time()
        subprocess.run(
            [sys.executable, "-m", "rlhflab", "demo", "--seed", str(seed), "--run-dir", str(run)], check=True
        )
        seconds[seed] = time.time() - start
        (run / "wall_seconds.txt").write_text(f"{seconds[seed]:.0f}\n")

    print(
        "| seed | gold: base | gold: tuned | proxy: base | proxy: tuned | KL (nats) | distinct-2 base / tuned "
        "| RM accuracy: labels / gold order / gold order, >= 0.5 apart | Spearman proxy-gold, base samples "
        "| wall time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        run = args.runs / f"demo-seed-{seed}"
        s = json.loads((run / "summary.json").read_text())
        manifest = json.loads((run / "manifest.json").read_text())
        results = manifest["stages"]["reward"]["results"]
        acc, gold_acc = results["val_accuracy"], results["val_gold_accuracy"]
        separated = results.get("val_gold_accuracy_separated")
        rho = s["base"].get("proxy_gold_spearman")
        wall = (run / "wall_seconds.txt").read_text().strip() if (run / "wall_seconds.txt").exists() else "?"
        b, t = s["base"], s["policy"]
        print(
            f"| {seed} | {b['gold']:.3f} ± {b['gold_stderr']:.3f} | {t['gold']:.3f} ± {t['gold_stderr']:.3f} "
            f"| {b['proxy']:.2f} | {t['proxy']:.2f} | {t['kl']:.1f} ± {t['kl_stderr']:.1f} "
            f"| {b['distinct_2']:.2f} / {t['distinct_2']:.2f} | {acc:.2f} / {gold_acc:.2f} / "
            f"{separated if separated is None else f'{separated:.2f}'} | {rho if rho is None else f'{rho:.2f}'} "
            f"| {wall} s |"
        )
    broken_table(args.runs, args.seeds)


def broken_table(runs: Path, seeds: list[int]) -> None:
    """What the optimisation broke, per seed, from the same files the report reads."""
    from rlhflab.report.measures import load_run, measure
    from rlhflab.run.rundir import RunDir

    print()
    print(
        "| seed | self-BLEU base / tuned | entropy base / tuned | top 3-gram: share base / tuned | ECE base / tuned "
        "| NLL base / tuned | steps to undo 90% |"
    )
    print("|---|---|---|---|---|---|---|")
    for seed in seeds:
        m = measure(load_run(RunDir(runs / f"demo-seed-{seed}")))
        d, a, cal, rm = m["diversity"], m["attractor"], m["calibration"], m["remisalignment"]
        steps = rm["steps"] if rm["steps"] is not None else f"> {rm['max_steps']}"
        print(
            f"| {seed} | {d['base']['self_bleu']:.2f} / {d['policy']['self_bleu']:.2f} "
            f"| {d['base']['entropy']:.2f} / {d['policy']['entropy']:.2f} "
            f'| {a["base_share"]:.2f} / {a["share"]:.2f} ("{a["phrase"]}") '
            f"| {cal['base']['ece']:.3f} / {cal['policy']['ece']:.3f} "
            f"| {cal['base']['nll']:.2f} / {cal['policy']['nll']:.2f} | {steps} |"
        )


if __name__ == "__main__":
    main()
