"""``rlhflab demo``: the classic RLHF experiment on the embedded default, start to finish.

1. sample pairs of continuations from the base policy and label them with a noisy
   simulated rater whose taste is the gold reward (VADER sentiment);
2. fit a reward model (the proxy) to those labels;
3. optimise the policy with PPO against the proxy, under a KL penalty to the base policy;
4. evaluate base and tuned policy on held-out prompts against gold and proxy;
5. diagnose what the optimisation broke (calibration, cost of undoing it);
6. write ``report.html``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rlhflab.config import build
from rlhflab.evaluation.diagnose import DiagnoseConfig
from rlhflab.evaluation.evaluate import EvalConfig
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
from rlhflab.methods.ppo import PPOConfig
from rlhflab.pipeline import stages as pipeline
from rlhflab.reward.train import RewardTrainConfig
from rlhflab.rollout.models import EMBEDDED
from rlhflab.run.rundir import RunDir


@dataclass(frozen=True)
class DemoPreset:
    feedback: SimulateConfig = field(default_factory=SimulateConfig)
    rater: SimulatedRater = field(default_factory=SimulatedRater)
    reward: RewardTrainConfig = field(default_factory=RewardTrainConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    diagnose: DiagnoseConfig = field(default_factory=DiagnoseConfig)


def preset(seed: int, quick: bool) -> DemoPreset:
    """The demo's settings: sized to finish in minutes on two CPU cores (or seconds with ``quick``)."""
    if quick:
        return DemoPreset(
            feedback=build(SimulateConfig, pairs=48, max_new_tokens=8, batch_size=16, seed=seed),
            reward=build(RewardTrainConfig, epochs=1, batch_size=8, eval_every=5, checkpoint_every=4, seed=seed),
            ppo=build(
                PPOConfig,
                steps=3,
                batch_size=8,
                minibatch_size=4,
                ppo_epochs=1,
                max_new_tokens=8,
                checkpoint_every=2,
                seed=seed,
            ),  # fmt: skip
            evaluate=build(EvalConfig, prompts=16, max_new_tokens=8, batch_size=16, seed=seed + 1),
            diagnose=build(
                DiagnoseConfig,
                heldout_sentences=32,
                remisalign_steps=4,
                remisalign_every=2,
                remisalign_prompts=8,
                max_new_tokens=8,
                seed=seed,
            ),
        )
    return DemoPreset(  # the configs' defaults: the stage-by-stage commands reproduce the demo
        feedback=build(SimulateConfig, seed=seed),
        reward=build(RewardTrainConfig, seed=seed),
        ppo=build(PPOConfig, seed=seed),
        evaluate=build(EvalConfig, seed=seed + 1),
        diagnose=build(DiagnoseConfig, seed=seed),
    )


def run_demo(
    run_dir: Path,
    model: str = EMBEDDED,
    seed: int = 0,
    quick: bool = False,
    task: str = "sentiment",
    progress: bool = True,
) -> dict:
    run = RunDir(run_dir)
    p = preset(seed, quick)
    t0 = time.time()
    say = print

    say(
        f"[1/6] feedback: {p.feedback.pairs} pairs from the base policy, simulated rater "
        f"(temperature {p.rater.temperature}, {p.rater.random_rate:.0%} random answers)"
    )
    fb = pipeline.feedback_simulate(run, model, task, p.feedback, p.rater, progress=progress)
    say(f"      {fb['pairs']} pairs; the rater agrees with the gold reward on {fb['agreement_with_gold']:.1%} of them")

    say(f"[2/6] reward model: Bradley-Terry, {p.reward.epochs:g} epochs")
    rm = pipeline.reward_train(run, model, run / RunDir.PAIRS, p.reward, progress=progress)
    gold_acc = rm.get("val_gold_accuracy")
    say(
        f"      held-out pair accuracy {rm['val_accuracy']:.3f} on {rm['val_pairs']} pairs (the rater's labels)"
        + (f"; orders {gold_acc:.1%} of the pairs with unequal gold scores as gold does" if gold_acc else "")
    )

    say(f"[3/6] PPO: {p.ppo.steps} steps of {p.ppo.batch_size} prompts, KL coefficient {p.ppo.kl_coef}")
    reward = str(run / RunDir.REWARD_MODEL)
    pipeline.optimize(run, "ppo", model, task, p.ppo, reward=reward, progress=progress)

    say(f"[4/6] evaluate on {p.evaluate.prompts} held-out prompts")
    summary = pipeline.evaluate_run(run, str(run / RunDir.POLICY), model, task, reward, p.evaluate, progress=progress)
    say("[5/6] diagnose: calibration on held-out text, cost of undoing the alignment")
    pipeline.diagnose_run(run, str(run / RunDir.POLICY), model, task, p.diagnose, progress=progress)

    say("[6/6] report")
    from rlhflab.report import write_report

    report = write_report([run], run / RunDir.REPORT)
    say(f"done in {time.time() - t0:.0f} s; run directory: {run.path}; open {report}")
    return summary
