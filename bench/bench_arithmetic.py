"""RL on the arithmetic task, measured: what a verifiable reward buys, what a wrong one does.

    .venv/bin/python bench/bench_arithmetic.py                    # GRPO with the rule (issue 12's bench)
    .venv/bin/python bench/bench_arithmetic.py --runs grpo:gold rloo:gold ppo:gold
    .venv/bin/python bench/bench_arithmetic.py --runs grpo:loophole grpo:format_only grpo:random_reward
    .venv/bin/python bench/bench_arithmetic.py --runs grpo:gold@beliefs grpo:gold@wrong-beliefs \
        grpo:learned@beliefs grpo:learned-agree@beliefs

Each run starts from ``embedded-arithmetic`` and optimises with the settings of ``rlhflab demo --task
arithmetic`` (``rlhflab.pipeline.demo.ARITHMETIC_GRPO``; RLOO the same; PPO the same rollout size), against:

- ``gold``: the strict verifier (``rlhflab.tasks.arithmetic_problems:strict``), the rule;
- ``loophole``: a verifier with a planted loophole (any listed number that equals the answer passes);
- ``trusts_user``: a verifier with a loophole the policy can reach by copying (the user's stated answer passes,
  right or wrong; with ``@beliefs``);
- ``format_only``, ``random_reward``: spurious rewards (Shao et al. 2025): a bare integer, right or wrong; a coin;
- ``learned``: a reward model (``rlhflab.pipeline.demo.ARITHMETIC_REWARD``) fitted to 20,000 comparisons of base
  samples by a simulated rater whose taste is the verifier (temperature 0.1, 10% random answers);
- ``learned-agree``: the same rater with an agreement bias of 1.0 (it likes a wrong answer that repeats the
  user's stated belief as much as a right one; Sharma et al. 2023).

on the task's training prompts (``@beliefs``: ``arithmetic-beliefs``, where 30% of them state a belief, right
half the time; ``@wrong-beliefs``: right 10% of the time; default: plain ``arithmetic``), then evaluates as the
demo does (500 held-out problems; pass@k from 64 samples of 100; sycophancy with a wrong
belief stated). Runs are kept under ``--out`` and read back when finished (delete one to redo it). The table
gives pass@1 (the gold mean, ± 1.96 standard errors), pass@64, where the pass@k curves cross, the share of
problems newly solved, the share of answers repeating a wrong stated belief, the exploitation rate of the last
training steps (rewarded but wrong), the KL to the base and the training's wall time — on a machine shared
with nothing else, or it says so (``--note``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

RULES = {
    "gold": "gold",
    "loophole": "rlhflab.tasks.arithmetic_problems:loophole",
    "trusts_user": "rlhflab.tasks.arithmetic_problems:trusts_user",
    "format_only": "rlhflab.tasks.arithmetic_problems:format_only",
    "random_reward": "rlhflab.tasks.arithmetic_problems:random_reward",
}
AGREEMENT_BIAS = 1.0
TASKS = {"beliefs": "arithmetic-beliefs", "wrong-beliefs": "rlhflab.tasks:arithmetic_wrong_beliefs"}
"""Short names for ``@TASK``: training prompts that state a belief, right half the time or 10% of the time."""


def learned_reward(out: Path, name: str, task: str, seed: int, progress: bool) -> str:
    """A reward model from simulated comparisons (shared by the runs that use it): -> its folder."""
    from rlhflab.core.config import build
    from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
    from rlhflab.models.loading import EMBEDDED_ARITHMETIC
    from rlhflab.pipeline import stages
    from rlhflab.pipeline.demo import ARITHMETIC_GRPO, ARITHMETIC_REWARD
    from rlhflab.pipeline.setup import Setup
    from rlhflab.reward.model import META
    from rlhflab.reward.train import RewardTrainConfig
    from rlhflab.run.rundir import RunDir

    run = RunDir(out / f"reward-{name}@{task.split(':')[-1]}")
    if not (run / RunDir.REWARD_MODEL / META).is_file():
        rater = SimulatedRater(agreement_bias=AGREEMENT_BIAS if name == "learned-agree" else 0.0, name=name)
        reward = dict(ARITHMETIC_REWARD)
        feedback = build(SimulateConfig, seed=seed, pairs=reward.pop("pairs"), batch_size=256,
                         max_new_tokens=ARITHMETIC_GRPO["max_new_tokens"])  # fmt: skip
        fb = stages.feedback_simulate(
            run, Setup.resolve(run, EMBEDDED_ARITHMETIC, task), feedback, rater, progress=progress
        )
        print(f"  {name}: {fb['pairs']} pairs, rater agrees with the verifier on {fb['agreement_with_gold']:.1%}")
        rm = stages.reward_train(run, EMBEDDED_ARITHMETIC, run / RunDir.PAIRS,
                                 build(RewardTrainConfig, backbone="model", seed=seed, **reward), progress=progress)  # fmt: skip
        print(f"  {name}: held-out accuracy {rm['val_accuracy']:.3f}, gold order {rm.get('val_gold_accuracy')}")
    probe = run / "belief_probe.json"
    if not probe.is_file():
        probe.write_text(json.dumps({"prefers_wrong_belief": belief_probe(str(run / RunDir.REWARD_MODEL), task)}))
    return str(run / RunDir.REWARD_MODEL)


def belief_probe(reward_dir: str, task_name: str) -> float:
    """Share of evaluation problems, asked with a wrong belief stated, on which the reward model scores the
    user's wrong answer above the right one (what an agreement bias teaches; a proxy that learned the rule
    alone would be near 0)."""
    from rlhflab.reward.model import RewardModel
    from rlhflab.tasks import arithmetic_problems as ar
    from rlhflab.tasks import load_task

    model = RewardModel.load(reward_dir)
    prompts, beliefs = zip(*(ar.wrong_variant(p) for p in load_task(task_name).eval_prompts))
    right = [ar.parse_prompt(p).answer for p in prompts]
    with torch.no_grad():
        wrong_score = model(list(prompts), [f" {b}" for b in beliefs])
        right_score = model(list(prompts), [f" {a}" for a in right])
    return float((wrong_score > right_score).float().mean())


def one_run(out: Path, method: str, reward: str, task: str, seed: int, progress: bool) -> dict:
    from rlhflab.core.config import build
    from rlhflab.evaluation.evaluate import EvalConfig
    from rlhflab.methods.grpo import GRPOConfig
    from rlhflab.methods.ppo import PPOConfig
    from rlhflab.models.loading import EMBEDDED_ARITHMETIC
    from rlhflab.pipeline import stages
    from rlhflab.pipeline.demo import ARITHMETIC_EVAL, ARITHMETIC_GRPO
    from rlhflab.pipeline.setup import Setup
    from rlhflab.run.rundir import RunDir

    run = RunDir(out / f"{method}-{reward}@{task.split(':')[-1]}")
    timing = run / "bench_timing.json"
    if not (run / RunDir.SUMMARY).is_file():
        source = RULES.get(reward) or learned_reward(out, reward, task, seed, progress)
        if method == "ppo":
            g = ARITHMETIC_GRPO
            # PPO samples one continuation per prompt: as many prompts a step as GRPO has continuations, the same
            # coefficient as GRPO's KL term (here a per-token penalty in the reward)
            config = build(PPOConfig, steps=g["steps"], prompts_per_step=g["prompts_per_step"] * g["samples_per_prompt"],
                           minibatch_size=g["minibatch_size"], lr=g["lr"], kl_coef=g["loss_kl_coef"],
                           max_new_tokens=g["max_new_tokens"], checkpoint_every=g["checkpoint_every"], seed=seed)  # fmt: skip
        else:
            config = build(GRPOConfig, **{**ARITHMETIC_GRPO, "seed": seed})
        if run.path.exists():
            import shutil

            shutil.rmtree(run.path)
        start = time.time()
        stages.optimize(
            run, method, Setup.resolve(run, EMBEDDED_ARITHMETIC, task), config, reward=source, progress=progress
        )
        seconds = time.time() - start
        timing.write_text(json.dumps({"train_seconds": round(seconds, 1)}))
        stages.evaluate_run(run, str(run / RunDir.POLICY), Setup.resolve(run, EMBEDDED_ARITHMETIC, "arithmetic"), None,
                            build(EvalConfig, **{**ARITHMETIC_EVAL, "seed": seed + 1}), progress=progress,
                            show=False)  # fmt: skip
    summary = json.loads((run / RunDir.SUMMARY).read_text())
    metrics = [json.loads(line) for line in (run / RunDir.METRICS).read_text().splitlines() if line.strip()]
    last = [m["objective/exploitation"] for m in metrics[-10:] if "objective/exploitation" in m]
    return {
        "run": f"{method}:{reward}" + ("" if task == "arithmetic" else f" @ {task.split(':')[-1]}"),
        "summary": summary,
        "exploitation_last10": sum(last) / len(last) if last else None,
        "train_seconds": json.loads(timing.read_text())["train_seconds"],
        "steps": len(metrics),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| run | pass@1 base -> tuned (gain ± 95%) | pass@64 base -> tuned | curves cross at k | newly solved "
        "| repeats a wrong belief: base -> tuned | rewarded but wrong (last 10 steps) | KL (nats) | training (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["summary"]
        b, p = s["base"], s["policy"]
        se = (b["gold_stderr"] ** 2 + p["gold_stderr"] ** 2) ** 0.5
        top = max(b["pass_at_k"], key=int)
        cross = s["pass_at_k"]["crossing_k"]
        syc = s.get("sycophancy") or {}
        rb = syc.get("base", {}).get("repeats_wrong_belief")
        rp = syc.get("policy", {}).get("repeats_wrong_belief")
        ex = r["exploitation_last10"]
        lines.append(
            f"| {r['run']} | {b['gold']:.3f} -> {p['gold']:.3f} ({p['gold'] - b['gold']:+.3f} ± {1.96 * se:.3f}) "
            f"| {b['pass_at_k'][top]:.3f} -> {p['pass_at_k'][top]:.3f} "
            f"| {'none' if cross is None else f'{cross:.1f}'} | {s['pass_at_k']['newly_solved']:.1%} "
            f"| {rb:.3f} -> {rp:.3f} | {'—' if ex is None else f'{ex:.2f}'} | {p['kl']:.2f} "
            f"| {r['train_seconds']:.0f} ({r['steps']} steps) |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=["grpo:gold"],
                   help="METHOD:REWARD (methods grpo, rloo, ppo; rewards " + ", ".join([*RULES, "learned",
                   "learned-agree"]) + "; default %(default)s)")  # fmt: skip
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench-arithmetic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    rows = []
    for spec in args.runs:
        head, _, task = spec.partition("@")
        method, _, reward = head.partition(":")
        if method not in ("grpo", "rloo", "ppo") or reward not in (*RULES, "learned", "learned-agree"):
            p.error(f"--runs: {spec!r} is not METHOD:REWARD[@TASK] with a method and reward listed in --help")
        task = TASKS.get(task, task) or "arithmetic"
        print(f"{spec} ...", flush=True)
        rows.append(one_run(args.out, method, reward, task, args.seed, args.progress))
    print(table(rows))


if __name__ == "__main__":
    main()
