"""Why did the conservative ensembles of ``rlhflab overopt`` not reduce over-optimisation? Their spread, measured.

    .venv/bin/python bench/overopt_ensemble_spread.py                    # reads runs/overopt (the default preset)
    .venv/bin/python bench/overopt_ensemble_spread.py --run-dir runs/overopt-ens5 --members 5   # overopt --ensemble 5

Coste et al. (2023) penalise a policy where an ensemble's members disagree (mean - std, min). That can only hold
back over-optimisation if the members disagree more on the texts the optimisation finds than on the base policy's
texts, by enough to offset the mean's rise. In the default overopt preset (3 members per ensemble, trained on the
same 250 labels with different seeds for head initialisation and data order) the conservative objectives fell
*more* than the mean. This script measures, for each seed of a finished overopt run:

- the base policy's texts: the best-of-n pool (every prompt, its first ``--samples`` continuations);
- the texts of each PPO policy tuned at N = 250 (against one model, and against the ensemble's mean, mean - std and
  min): ``--samples`` continuations per pool prompt, sampled at the preset's temperature;

and prints, per text set, the gold, the ensemble's mean and the members' standard deviation (each member normalised
on its training texts, as the objective sees them), the members' pairwise correlation, and the share of the mean's
rise over the base that the spread takes back (d std / d mean). Nothing is trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from rlhflab.core.files import iter_jsonl
from rlhflab.models.loading import load_policy
from rlhflab.models.sampling import sample
from rlhflab.pipeline.overopt import Proxy  # noqa: E402
from rlhflab.reward.model import RewardModel  # noqa: E402
from rlhflab.run.rundir import RunDir  # noqa: E402
from rlhflab.tasks import load_task  # noqa: E402

NAMES = {"single": "PPO vs one model", "mean": "PPO vs ensemble mean", "mean_minus_std": "PPO vs mean - std",
         "min": "PPO vs min"}  # fmt: skip


def tuned_texts(policy_dir: Path, prompts: list[str], samples: int, max_new_tokens: int, temperature: float, seed: int):
    policy, tokenizer = load_policy(str(policy_dir), None)
    policy.eval()
    flat = [p for p in prompts for _ in range(samples)]
    out = sample(policy, tokenizer, flat, max_new_tokens=max_new_tokens, seed=seed, temperature=temperature)
    return flat, list(out.responses)


def describe(rm: RewardModel, gold_fn, prompts: list[str], texts: list[str]) -> dict:
    members = rm.member_scores(prompts, texts).numpy()  # [k, B], normalised
    corr = np.corrcoef(members)
    k = len(members)
    return {
        "texts": len(texts),
        "gold": float(np.mean(gold_fn(prompts, texts))),
        "mean": float(members.mean(0).mean()),
        "std": float(members.std(0).mean()),
        "min": float(members.min(0).mean()),
        "corr": float(np.mean([corr[i, j] for i in range(k) for j in range(i + 1, k)])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--run-dir", default="runs/overopt", help="a finished `rlhflab overopt` run with the ensemble lever"
    )
    ap.add_argument("--labels", type=int, default=250, help="the label count the levers were run at")
    ap.add_argument("--members", type=int, default=3, help="the ensemble lever's size (overopt --ensemble)")
    ap.add_argument("--samples", type=int, default=16, help="continuations per pool prompt for each text set")
    ap.add_argument("--seed", type=int, default=0, help="the sampling seed")
    args = ap.parse_args()
    run = Path(args.run_dir)
    if not (run / "overopt.json").is_file():
        sys.exit(f"{run}: no overopt.json; run `rlhflab overopt --run-dir {run}` to the end first")
    meta = json.loads((run / "overopt.json").read_text())
    preset = meta["preset"]
    sampling = preset["feedback"]["sampling"]
    task = load_task(meta["task"])
    single, ensemble = Proxy(args.labels, 0.0, 1), Proxy(args.labels, 0.0, args.members)
    policies = [(NAMES[o], proxy.name, proxy.rl_folder(o)) for proxy in (single, ensemble) for o in proxy.objectives()]
    rows = []
    for seed_dir in sorted(run.glob("seed-*")):
        ens_dir = seed_dir / ensemble.name / RunDir.REWARD_MODEL
        if not ens_dir.is_dir():
            print(f"{seed_dir}: no ensemble at {args.labels} labels; skipped")
            continue
        rm = RewardModel.load(ens_dir)
        pool = [row for _, row in iter_jsonl(seed_dir / "pool.jsonl", "best-of-n pool")]
        prompts = [r["prompt"] for r in pool]
        base_p = [p for r in pool for p in [r["prompt"]] * min(args.samples, len(r["texts"]))]
        base_t = [t for r in pool for t in r["texts"][: args.samples]]
        base = describe(rm, task.gold, base_p, base_t)
        rows.append({"seed": seed_dir.name, "texts of": "base policy", **base})
        for name, proxy_folder, rl_folder in policies:
            pdir = seed_dir / proxy_folder / rl_folder / RunDir.POLICY
            if not (pdir / "config.json").is_file():
                print(f"{pdir}: not finished; skipped")
                continue
            p, t = tuned_texts(pdir, prompts, args.samples, sampling["max_new_tokens"], sampling["temperature"],
                               args.seed)  # fmt: skip
            d = describe(rm, task.gold, p, t)
            rise = d["mean"] - base["mean"]
            d["std_per_mean_rise"] = (d["std"] - base["std"]) / rise if abs(rise) > 1e-9 else float("nan")
            rows.append({"seed": seed_dir.name, "texts of": name, **d})
    if not rows:
        sys.exit(f"{run}: no seed with an ensemble at {args.labels} labels")
    cols = ["seed", "texts of", "texts", "gold", "mean", "std", "min", "corr", "std_per_mean_rise"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols))
    print("\nmeans over seeds")
    for name in ["base policy", *(name for name, _, _ in policies)]:
        sel = [r for r in rows if r["texts of"] == name]
        if sel:
            print(name.ljust(22), " ".join(f"{c} {np.mean([r[c] for r in sel if c in r]):.3f}"
                                           for c in cols[3:] if any(c in r for r in sel)))  # fmt: skip


if __name__ == "__main__":
    main()
