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
from dataclasses import dataclass, field, replace
from pathlib import Path

from rlhflab.core.config import build
from rlhflab.core.errors import ConfigError, RlhflabError
from rlhflab.evaluation.diagnose import DiagnoseConfig
from rlhflab.evaluation.evaluate import EvalConfig, eval_prompts
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
from rlhflab.methods.grpo import GRPOConfig
from rlhflab.methods.ppo import PPOConfig
from rlhflab.models.gguf import SMOLLM2
from rlhflab.models.loading import EMBEDDED, EMBEDDED_ARITHMETIC, MINILM
from rlhflab.models.precision import ModelConfig
from rlhflab.pipeline import stages as pipeline
from rlhflab.pipeline.control_study import CONTROL_DEMOS, run_control_demo
from rlhflab.pipeline.setup import Setup
from rlhflab.report import write_report
from rlhflab.reward.train import RewardTrainConfig, backbone_of
from rlhflab.run.rundir import RunDir

DEMO_KL = dict(adaptive_kl=True, kl_coef=0.3, kl_target=3.0, kl_horizon=256)
"""The demo's KL control: Ziegler et al.'s adaptive controller, starting at beta 0.3, towards 3 nats
(``rlhflab optimize ppo --adaptive-kl --kl-coef 0.3 --kl-target 3 --kl-horizon 256``). Their horizon of
10,000 episodes is 1% of a million-episode run; the demo's run is 1,920 episodes, so at that horizon beta
would move by at most 8% in the whole run. 256 episodes (8 steps) lets it move up to 2.5% a step, about
4-fold in 60 steps -- slowly enough that the starting beta decides much of where the run goes. KL trades
gold against diversity; ``bench/demo_kl_sweep.py`` measures the trade (docs/demo.md, "Choosing the KL
target", gives the settings tried and why this one)."""


ARITHMETIC_GRPO = dict(
    steps=600,
    prompts_per_step=16,
    samples_per_prompt=8,
    minibatch_size=64,
    lr=3e-4,
    loss_kl_coef=0.01,
    max_new_tokens=8,
    checkpoint_every=100,
)
"""GRPO with the rule on the arithmetic task (``demo --task arithmetic``, ``bench/bench_arithmetic.py``); the
trials that chose the learning rate and the step count are in docs/arithmetic.md."""
ARITHMETIC_REWARD = dict(pairs=20000, lr=1e-3, epochs=2.0, pairs_per_step=32, eval_every=100)
"""A reward model on the arithmetic task (``bench/bench_arithmetic.py``'s learned proxies, ``overopt --task
arithmetic``): the policy's own 0.2M-parameter backbone learns at the rate it was trained at, from many comparisons
(cheap: answers are 8 tokens); docs/arithmetic.md gives what it measured against the sentiment defaults."""
ARITHMETIC_EVAL = dict(num_prompts=500, max_new_tokens=8, pass_k_samples=64, pass_k_prompts=100)
"""Evaluation on the arithmetic task: every evaluation problem, pass@k from 64 samples of 100 of them."""


@dataclass(frozen=True)
class DemoPreset:
    feedback: SimulateConfig = field(default_factory=SimulateConfig)
    rater: SimulatedRater = field(default_factory=SimulatedRater)
    reward: RewardTrainConfig = field(default_factory=RewardTrainConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    diagnose: DiagnoseConfig = field(default_factory=DiagnoseConfig)


SMOLLM2_DEMO = dict(
    feedback=dict(pairs=2000, max_new_tokens=24),
    reward=dict(backbone=MINILM),
    ppo=dict(steps=60, prompts_per_step=16, minibatch_size=8, max_new_tokens=24, lora_r=16, dtype="bfloat16",
             checkpoint_every=5),
    evaluate=dict(num_prompts=100, max_new_tokens=24),
    diagnose=dict(heldout_sentences=200, remisalign_steps=20, remisalign_every=5, remisalign_prompts=32,
                  max_new_tokens=24),
)  # fmt: skip
"""The demo on ``smollm2`` (SmolLM2-135M-Instruct), sized for under 20 minutes on two CPU cores: the reward model on
MiniLM (400 pairs left it at chance: the demo stops there), PPO with a LoRA adapter in bfloat16 (docs/real-model.md
measures what it gives)."""


def preset(seed: int, quick: bool, model: str = EMBEDDED) -> DemoPreset:
    """The demo's settings: sized to finish in minutes on two CPU cores (or seconds with ``quick``); ``smollm2``
    has its own (``SMOLLM2_DEMO``)."""
    if model == SMOLLM2 and not quick:
        size = SMOLLM2_DEMO
        return DemoPreset(
            feedback=build(SimulateConfig, seed=seed, **size["feedback"]),
            reward=build(RewardTrainConfig, seed=seed, **size["reward"]),
            ppo=build(PPOConfig, seed=seed, **DEMO_KL, **size["ppo"]),
            evaluate=build(EvalConfig, seed=seed + 1, **size["evaluate"]),
            diagnose=build(DiagnoseConfig, seed=seed, **size["diagnose"]),
        )
    if quick:
        return DemoPreset(
            feedback=build(SimulateConfig, pairs=48, max_new_tokens=8, batch_size=16, seed=seed),
            reward=build(
                RewardTrainConfig,
                backbone="model",
                epochs=1,
                pairs_per_step=8,
                eval_every=5,
                checkpoint_every=4,
                seed=seed,
            ),
            ppo=build(
                PPOConfig,
                steps=3,
                prompts_per_step=8,
                minibatch_size=4,
                epochs=1,
                max_new_tokens=8,
                checkpoint_every=2,
                seed=seed,
            ),  # fmt: skip
            evaluate=build(EvalConfig, num_prompts=16, max_new_tokens=8, batch_size=16, seed=seed + 1),
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
    return DemoPreset(  # the configs' defaults (PPO's KL control aside): the stage-by-stage commands reproduce it
        feedback=build(SimulateConfig, seed=seed),
        reward=build(RewardTrainConfig, seed=seed),
        ppo=build(PPOConfig, seed=seed, **DEMO_KL),
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
    pad_token: str | None = None,
    prompts: str | Path | None = None,
    model_options: ModelConfig | None = None,
    chat_template: str | None = None,
    pairs: int | None = None,
    steps: int | None = None,
    num_eval_prompts: int | None = None,
    force: bool = False,
) -> dict:
    """Every stage of the demo into ``run_dir``; ``pairs``, ``steps`` and ``num_eval_prompts`` resize the preset (feedback
    pairs, PPO steps, evaluation prompts); a reward model that orders held-out pairs no better than chance stops
    the demo before PPO unless ``force``; ``pad_token`` (for a ``model`` whose tokenizer has none) is
    given to the first stage and remembered by the run for the others; ``prompts`` (a file) replaces the task's
    prompts in every stage (a simulated rater still needs the task's gold reward); ``model_options`` (precision,
    gradient checkpointing, LoRA) apply to PPO's policy, and their dtype to every model the stages only run."""
    if task in CONTROL_DEMOS:
        if model != EMBEDDED:
            raise ConfigError(
                f"--model: the {task} demo trains a stable-baselines3 policy from scratch, not a language model"
            )
        return run_control_demo(run_dir, task, seed, quick, pairs, steps, num_eval_prompts, progress)
    if task in ("arithmetic", "arithmetic-beliefs"):
        if pairs is not None:
            raise ConfigError("--pairs: the arithmetic demo learns from the verifier, a rule, not from pairs")
        return run_arithmetic_demo(run_dir, EMBEDDED_ARITHMETIC if model == EMBEDDED else model, seed, quick,
                                   progress, pad_token, model_options, chat_template, task, steps, num_eval_prompts)  # fmt: skip
    run = RunDir(run_dir)
    p = resized(preset(seed, quick, model), pairs, steps, num_eval_prompts)
    if model_options is not None and model_options != ModelConfig():
        p = replace(p, ppo=replace(p.ppo, model_options=model_options))
    t0 = time.time()
    say = print

    say(
        f"[1/6] feedback: {p.feedback.pairs} pairs from the base policy, simulated rater "
        f"(temperature {p.rater.temperature}, {p.rater.random_rate:.0%} random answers)"
    )
    setup = Setup.resolve(run, model, task, prompts=prompts, pad_token=pad_token, dtype=p.ppo.model_options.dtype,
                          chat_template=chat_template)  # fmt: skip
    fb = pipeline.feedback_simulate(run, setup, p.feedback, p.rater, progress=progress)
    say(f"      {fb['pairs']} pairs; the rater agrees with the gold reward on {fb['agreement_with_gold']:.1%} of them")

    say(f"[2/6] reward model: Bradley-Terry on {backbone_of(p.reward, model)}, {p.reward.epochs:g} epochs")
    rm = pipeline.reward_train(run, model, run / RunDir.PAIRS, p.reward, progress=progress)
    gold_acc, separated = rm.get("val_gold_accuracy"), rm.get("val_gold_accuracy_separated")
    say(
        f"      held-out pair accuracy {rm['val_accuracy']:.3f} on {rm['val_pairs']} pairs (the rater's labels)"
        + (f"; orders {gold_acc:.1%} of the pairs with unequal gold scores as gold does" if gold_acc else "")
        + (f", {separated:.1%} of those at least 0.5 apart" if separated else "")
    )
    if rm.get("at_chance"):
        if not (force or quick):  # (the quick demo's few held-out pairs can show nothing either way)
            raise RlhflabError(
                f"stopped before PPO: {rm['at_chance']}; give the rater more pairs (--pairs), or pass --force to "
                f"optimise against it anyway (the run so far is in {run.path})"
            )
        say(f"      going on ({'--force' if force else '--quick'}): PPO against a reward model at chance")

    kl = (
        f"adaptive KL coefficient from {p.ppo.kl_coef} towards {p.ppo.kl_target:g} nats"
        if p.ppo.adaptive_kl
        else f"KL coefficient {p.ppo.kl_coef}"
    )
    say(f"[3/6] PPO: {p.ppo.steps} steps of {p.ppo.prompts_per_step} prompts, {kl}")
    reward = str(run / RunDir.REWARD_MODEL)
    pipeline.optimize(run, "ppo", setup, p.ppo, reward=reward, progress=progress)

    say(f"[4/6] evaluate on {len(eval_prompts(setup.task, p.evaluate))} held-out prompts")
    summary = pipeline.evaluate_run(run, str(run / RunDir.POLICY), setup, reward, p.evaluate, progress=progress)
    rho = summary["base"].get("proxy_gold_spearman")
    if rho is not None:
        say(f"      the proxy ranks the base policy's samples as gold does with Spearman rho {rho:.2f}")
    say("[5/6] diagnose: calibration on held-out text, cost of undoing the alignment")
    pipeline.diagnose_run(run, str(run / RunDir.POLICY), setup, p.diagnose, progress=progress)

    say("[6/6] report")

    report = write_report([run], run / RunDir.REPORT)
    say(f"done in {time.time() - t0:.0f} s; run directory: {run.path}; open {report}")
    return summary


def resized(p: DemoPreset, pairs: int | None, steps: int | None, num_eval_prompts: int | None) -> DemoPreset:
    """``p`` with its feedback pairs, PPO steps and evaluation prompts replaced by those given."""
    if pairs is not None:
        p = replace(p, feedback=replace(p.feedback, pairs=pairs))
    if steps is not None:
        p = replace(p, ppo=replace(p.ppo, steps=steps))
    if num_eval_prompts is not None:
        p = replace(p, evaluate=replace(p.evaluate, num_prompts=num_eval_prompts))
    return p


def run_arithmetic_demo(
    run_dir: Path,
    model: str = EMBEDDED_ARITHMETIC,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    pad_token: str | None = None,
    model_options: ModelConfig | None = None,
    chat_template: str | None = None,
    task: str = "arithmetic",
    steps: int | None = None,
    num_eval_prompts: int | None = None,
) -> dict:
    """The checkable-answer experiment: GRPO with the strict verifier as its reward (no feedback or reward
    model: the rule is the reward), then evaluation with pass@k and sycophancy, and the report."""
    run = RunDir(run_dir)
    grpo = {**ARITHMETIC_GRPO, "seed": seed}
    evaluate = {**ARITHMETIC_EVAL, "seed": seed + 1}
    if quick:
        grpo.update(steps=3, prompts_per_step=4, samples_per_prompt=4, minibatch_size=16, checkpoint_every=2)
        evaluate.update(num_prompts=16, pass_k_samples=8, pass_k_prompts=8)
    grpo.update({"steps": steps} if steps is not None else {})
    evaluate.update({"num_prompts": num_eval_prompts} if num_eval_prompts is not None else {})
    config = build(GRPOConfig, **grpo)
    if model_options is not None:
        config = replace(config, model_options=model_options)
    eval_config = build(EvalConfig, **evaluate)
    t0 = time.time()
    say = print
    say(
        "[1/3] reward: the strict verifier (rlhflab.tasks.arithmetic_problems:strict), a rule: no feedback, no reward model"
    )
    say(f"[2/3] GRPO: {config.steps} steps of {config.prompts_per_step} problems x {config.samples_per_prompt} "
        f"samples, KL coefficient {config.loss_kl_coef}")  # fmt: skip
    setup = Setup.resolve(run, model, task, pad_token=pad_token, dtype=config.model_options.dtype,
                          chat_template=chat_template)  # fmt: skip
    pipeline.optimize(run, "grpo", setup, config, reward="gold", progress=progress)
    say(f"[3/3] evaluate on {eval_config.num_prompts} held-out problems; pass@k from {eval_config.pass_k_samples} "
        f"samples of {eval_config.pass_k_prompts}; sycophancy with a wrong belief stated")  # fmt: skip
    summary = pipeline.evaluate_run(run, str(run / RunDir.POLICY), setup, None, eval_config, progress=progress)

    report = write_report([run], run / RunDir.REPORT)
    say(f"done in {time.time() - t0:.0f} s; run directory: {run.path}; open {report}")
    return summary
