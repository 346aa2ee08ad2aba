"""How the demo's KL control was chosen: PPO against one demo run's reward model at several
(starting KL coefficient, KL target) settings, each evaluated as the demo evaluates.

    .venv/bin/python bench/demo_kl_sweep.py --run runs/demo-seed-0
    .venv/bin/python bench/demo_kl_sweep.py --run runs/demo-seed-0 --settings 0.1:6 0.3:3

Every setting is the demo's PPO (``rlhflab.pipeline.demo.DEMO_KL``, 60 steps of 32 prompts)
with ``kl_coef`` and ``kl_target`` replaced, against ``RUN/reward_model``, with the run's seed;
each writes ``RUN/kl-sweep/c<coef>-t<target>/`` (finished settings are read back, not rerun)
and the table prints gold gain, KL, distinct-2 against the base's and the top 3-gram's share —
the healthy-demo criteria of issue 10 (gold gain >= 0.3 at KL <= 10, distinct-2 >= 0.8x the
base's, top 3-gram share <= 0.3).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a finished demo run (its reward_model is used)")
    p.add_argument(
        "--settings",
        nargs="+",
        default=["0.1:6", "0.1:3", "0.2:4", "0.3:3"],
        help="COEF:TARGET pairs (default: %(default)s)",
    )
    args = p.parse_args()

    from rlhflab.core.config import build
    from rlhflab.evaluation.evaluate import EvalConfig
    from rlhflab.methods.ppo import PPOConfig
    from rlhflab.pipeline import stages as pipeline
    from rlhflab.pipeline.demo import DEMO_KL
    from rlhflab.pipeline.setup import Setup
    from rlhflab.report.measures import load_run, measure
    from rlhflab.run.rundir import RunDir

    demo = json.loads((args.run / "manifest.json").read_text())["stages"]
    seed = demo["ppo"]["config"]["run"]["seed"]
    reward = str(args.run / RunDir.REWARD_MODEL)
    rows = []
    for setting in args.settings:
        coef, target = (float(x) for x in setting.split(":"))
        run = RunDir(args.run / "kl-sweep" / f"c{coef:g}-t{target:g}")
        start = time.time()
        if not (run / "summary.json").is_file():
            config = build(PPOConfig, seed=seed, **{**DEMO_KL, "kl_coef": coef, "kl_target": target})
            pipeline.optimize(
                run, "ppo", Setup.resolve(run, "embedded", "sentiment"), config, reward=reward, progress=False
            )
            evaluate = build(EvalConfig, seed=demo["evaluate"]["config"]["seed"])
            setup = Setup.resolve(run, "embedded", "sentiment")
            pipeline.evaluate_run(run, str(run / RunDir.POLICY), setup, reward, evaluate, progress=False)
        s = json.loads((run / "summary.json").read_text())
        attractor = measure(load_run(run))["attractor"]
        rows.append((coef, target, s["base"], s["policy"], attractor, time.time() - start))

    print("| starting KL coef. | KL target | gold: base -> tuned (gain) | KL (nats) | distinct-2: base -> tuned (ratio) "
          "| top 3-gram share |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for coef, target, b, t, a, _ in rows:
        print(
            f"| {coef:g} | {target:g} | {b['gold']:.3f} -> {t['gold']:.3f} (+{t['gold'] - b['gold']:.3f}) "
            f"| {t['kl']:.2f} | {b['distinct_2']:.2f} -> {t['distinct_2']:.2f} ({t['distinct_2'] / b['distinct_2']:.2f}) "
            f'| {a["share"]:.2f} ("{a["phrase"]}") |'
        )


if __name__ == "__main__":
    main()
