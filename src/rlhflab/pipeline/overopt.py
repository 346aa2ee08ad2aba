"""``rlhflab overopt``: reward over-optimisation (Gao, Schulman & Hilton 2022) reproduced on a task
with a known gold reward.

The synthetic set-up of Gao et al.: the gold reward labels comparisons of base-policy samples;
proxy reward models are trained on N of those labels for several N; each proxy is then
optimised by best-of-n (n = 1 ... ``max(ns)``, estimated without bias from one pool of base
samples per prompt) and by an RL method run far along KL. Gold and proxy are read against
d = sqrt(KL to the base) and Gao et al.'s two forms are fitted to the gold gain. Two levers
from the literature run in the same harness at the smallest N: conservative ensembles (mean,
mean - lambda * std, min; Coste et al. 2023) and label noise (a rater answering at random a
share of the time; AlpacaFarm, Coste et al.).

Layout of the output directory::

    seed-<s>/pairs.jsonl                 gold-labelled comparisons of base samples (the largest N)
    seed-<s>/pool.jsonl                  the best-of-n pool: per evaluation prompt, ``pool`` samples and their gold
    seed-<s>/<proxy>/                    one proxy: pairs.jsonl (its N labels), reward_model/, bon.json, rl/
    overopt.csv                          one row per point: labels, method, objective, noise, n, step, kl, gold, proxy, seed
    overopt.json                         the preset, the Gao fits per curve, the wall time
    overopt.png                          gold and proxy against sqrt(KL), in the manner of Gao et al.'s Fig. 1

Every unit (pairs, a proxy, a pool, a best-of-n curve, an RL run) is written when it finishes and
is not redone, so an interrupted run continues where it stopped; an RL run continues from its
last checkpoint. The curves and fits are ``rlhflab.evaluation.overopt_curves``'s, the figure
``rlhflab.report.figures_sweeps``'.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rlhflab.core import metric_names as M
from rlhflab.core.comparison import PreferencePair, read_pairs, write_pairs
from rlhflab.core.config import SamplingConfig, build
from rlhflab.core.errors import ConfigError
from rlhflab.core.files import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    csv_text,
    iter_jsonl,
    read_json,
    read_jsonl,
    strict_json,
)
from rlhflab.evaluation.diagnostics.best_of_n import best_of_n_curve
from rlhflab.evaluation.overopt_curves import aggregate, fit_curves, format_fits
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
from rlhflab.methods.grpo import GRPOConfig
from rlhflab.methods.ppo import PPOConfig
from rlhflab.models.loading import check_fits, load_policy
from rlhflab.models.sampling import sample
from rlhflab.pipeline import stages
from rlhflab.pipeline.demo import ARITHMETIC_GRPO, ARITHMETIC_REWARD
from rlhflab.pipeline.overopt_config import OveroptPreset
from rlhflab.pipeline.setup import Setup
from rlhflab.report.figures_sweeps import overopt_figure
from rlhflab.reward.model import META, RewardModel, aggregate_scores
from rlhflab.reward.train import RewardTrainConfig
from rlhflab.run.rundir import RunDir
from rlhflab.tasks import load_task

OBJECTIVES = ("single", "mean", "mean_minus_std", "min")
"""How a proxy scores: one reward model, or an ensemble's mean, mean - lambda * std, or min."""
CSV_COLUMNS = ("labels", "method", "objective", "noise", "n", "step", "kl", "gold", "proxy", "seed")


def preset(name: str) -> OveroptPreset:
    """``default``: the embedded model, 3 seeds, within an hour on 2 CPU cores. ``arithmetic``: learned proxies
    against the rule on the arithmetic task (GRPO; RL against the rule itself too). ``quick``: seconds, for
    tests (use it with a micro model)."""
    if name == "quick":
        small = dict(max_new_tokens=6)
        return OveroptPreset(
            labels=(16, 32),
            seeds=2,
            feedback=build(SimulateConfig, batch_size=16, **small),
            reward=build(RewardTrainConfig, epochs=1, pairs_per_step=8, eval_every=5, checkpoint_every=1000),
            rl_method="ppo",
            rl=build(PPOConfig, steps=4, prompts_per_step=8, minibatch_size=4, epochs=1, kl_coef=0.0, **small),
            pool=8,
            pool_prompts=4,
            ns=(1, 2, 4, 8),
            ensemble=2,
            window=2,
        )
    if name == "default":
        return OveroptPreset(
            labels=(250, 1000, 4000),
            seeds=3,
            feedback=build(SimulateConfig),
            # the reward-model settings docs/overopt.* were measured with (before the demo's moved to minilm):
            # the policy's own backbone, learning rate 1e-4 for backbone and head alike, 3 epochs
            reward=build(RewardTrainConfig, backbone="model", lr=1e-4, head_lr_scale=1.0, epochs=3.0),
            rl_method="ppo",
            rl=build(PPOConfig, steps=40, kl_coef=0.0, checkpoint_every=10),
            pool=256,
            pool_prompts=24,
            ns=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
    if name == "arithmetic":
        small = dict(max_new_tokens=ARITHMETIC_GRPO["max_new_tokens"])
        reward = {k: v for k, v in ARITHMETIC_REWARD.items() if k != "pairs"}
        return OveroptPreset(
            labels=(1000, 4000, 16000),
            seeds=3,
            feedback=build(SimulateConfig, batch_size=256, **small),
            reward=build(RewardTrainConfig, backbone="model", **reward),
            rl_method="grpo",
            rl=build(GRPOConfig, **{**ARITHMETIC_GRPO, "loss_kl_coef": 0.0}),
            pool=256,
            pool_prompts=48,
            ns=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            gold_rl=True,
        )
    raise ConfigError(f"--preset must be 'default', 'arithmetic' or 'quick', got {name!r}")


@dataclass(frozen=True)
class Proxy:
    """One proxy reward model of the harness."""

    labels: int
    noise: float
    members: int

    @property
    def name(self) -> str:
        return f"labels-{self.labels}-noise-{self.noise:g}" + (f"-ensemble-{self.members}" if self.members > 1 else "")

    def objectives(self) -> tuple[str, ...]:
        return OBJECTIVES[1:] if self.members > 1 else ("single",)

    @staticmethod
    def rl_folder(objective: str) -> str:
        """The folder, inside the proxy's, of the RL run against ``objective``."""
        return "rl" if objective == "single" else f"rl-{objective}"


def proxies(preset: OveroptPreset) -> list[Proxy]:
    lever = preset.lever_labels or min(preset.labels)
    out = [Proxy(n, 0.0, 1) for n in preset.labels]
    out += [Proxy(lever, r, 1) for r in preset.noise if r != 0]
    if preset.ensemble > 1:
        out.append(Proxy(lever, 0.0, preset.ensemble))
    return out


# ---------------------------------------------------------------- the units of work


def relabel(pairs: list[PreferencePair], rater: SimulatedRater, generator: torch.Generator) -> list[PreferencePair]:
    """The same comparisons answered by another rater (another noise level), from their gold scores."""
    answers = [
        rater.compare(p.prompt, p.chosen, p.rejected, p.scores["gold_chosen"], p.scores["gold_rejected"], generator)
        for p in pairs
    ]
    return [a for a in answers if a is not None]  # (a rater that skips leaves fewer pairs)


def _sample_pool(
    path: Path, model: str, task, prompts: list[str], preset: OveroptPreset, seed: int, pad_token, progress
):
    """Write ``pool`` base continuations per prompt with their gold scores (one JSONL row per prompt)."""
    policy, tokenizer = load_policy(model, pad_token)
    policy.eval()
    sampling: SamplingConfig = preset.feedback.sampling
    check_fits(policy, tokenizer, prompts, sampling.max_new_tokens)
    g = torch.Generator().manual_seed(seed)
    flat = [p for p in prompts for _ in range(preset.pool)]
    texts: list[str] = []
    bar = tqdm(total=len(flat), desc="overopt: best-of-n pool", unit="sample", disable=not progress)
    for start in range(0, len(flat), preset.pool_batch):
        batch = flat[start : start + preset.pool_batch]
        s = int(torch.randint(0, 2**62, (), generator=g))
        r = sample(policy, tokenizer, batch, max_new_tokens=sampling.max_new_tokens, seed=s,
                   temperature=sampling.temperature)  # fmt: skip
        texts += r.responses
        bar.update(len(batch))
    bar.close()
    gold = [float(x) for x in task.gold(flat, texts)]
    rows = [
        {
            "prompt": p,
            "texts": texts[i * preset.pool : (i + 1) * preset.pool],
            "gold": gold[i * preset.pool : (i + 1) * preset.pool],
        }
        for i, p in enumerate(prompts)
    ]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _bon_curves(proxy: Proxy, reward_dir: Path, pool: list[dict], preset: OveroptPreset) -> dict:
    """Best-of-n's gold and proxy for every n, for each of the proxy's objectives."""
    rm = RewardModel.load(reward_dir)
    prompts = [r["prompt"] for r in pool for _ in r["texts"]]
    texts = [t for r in pool for t in r["texts"]]
    members = rm.member_scores(prompts, texts)  # [k, P * pool], normalised
    gold = np.array([r["gold"] for r in pool])
    out = {}
    for objective in proxy.objectives():
        how = "mean" if objective == "single" else objective
        scores = aggregate_scores(members, how, preset.std_coef).numpy().reshape(len(pool), -1)
        out[objective] = best_of_n_curve(scores, gold, preset.ns)
    return out


def _rl_run(
    run: RunDir,
    model: str,
    task_name: str,
    preset: OveroptPreset,
    reward: str,
    pad_token,
    progress,
    say,
    what: str,
    prompts=None,
) -> None:
    """One RL run against ``reward``, unless it finished; an interrupted one continues from its last checkpoint."""
    if (run / RunDir.POLICY / "config.json").is_file():
        return
    say(what)
    checkpoints = run / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        stages.resume_method(run.path, preset.rl_method, progress=progress)
        return
    if run.path.exists():
        shutil.rmtree(run.path)
    setup = Setup.resolve(run, model, task_name, prompts=prompts, pad_token=pad_token)
    stages.optimize(run, preset.rl_method, setup, preset.rl, reward=reward, progress=progress)


def _rl_points(metrics: Path, window: int) -> list[dict]:
    """(step, kl, gold, proxy) points of an RL run: the first step alone (its samples come from the base
    policy, so it is the curve's origin), then the means of consecutive windows of ``window`` steps."""
    rows = [r for r in read_jsonl(metrics) if M.KL in r and M.GOLD in r]
    chunks = [rows[:1]] + [rows[s : s + window] for s in range(1, len(rows), window)] if rows else []
    return [
        {
            "step": int(chunk[-1][M.STEP]),
            "kl": float(np.mean([r[M.KL] for r in chunk])),
            "gold": float(np.mean([r[M.GOLD] for r in chunk])),
            "proxy": float(np.mean([r[M.SCORE] for r in chunk])),
        }
        for chunk in chunks
    ]


# ---------------------------------------------------------------- the harness


def run_overopt(
    root: Path,
    model: str,
    task_name: str,
    preset: OveroptPreset,
    seed: int = 0,
    pad_token: str | None = None,
    progress: bool = True,
    say=print,
    prompts: str | Path | None = None,
) -> dict:
    task = load_task(task_name, prompts)
    if task.gold is None:
        raise ConfigError(f"task '{task_name}' has no gold reward; overopt measures proxies against gold")
    started = time.time()
    largest = max(preset.labels)
    rows: list[dict] = []
    for s in range(preset.seeds):
        seed_dir = root / f"seed-{s}"
        seed_dir.mkdir(parents=True, exist_ok=True)
        s_seed = seed + 1000 * s
        pairs_path = seed_dir / RunDir.PAIRS
        if not pairs_path.is_file():
            say(f"[seed {s}] {largest} gold-labelled comparisons of base samples")
            collect = RunDir(seed_dir / "feedback")
            stages.feedback_simulate(
                collect, Setup.resolve(collect, model, task_name, prompts=prompts, pad_token=pad_token),
                replace(preset.feedback, pairs=largest, seed=s_seed),
                SimulatedRater(temperature=0.0, random_rate=0.0, name="gold"), progress,
            )  # fmt: skip
            shutil.copyfile(collect / RunDir.PAIRS, pairs_path)
        all_pairs = read_pairs(pairs_path)
        if len(all_pairs) < largest:
            say(f"[seed {s}] note: {len(all_pairs)} usable comparisons (some samples were empty or identical)")

        pool_path = seed_dir / "pool.jsonl"
        if not pool_path.is_file():
            say(
                f"[seed {s}] best-of-n pool: {preset.pool} samples for each of {preset.pool_prompts} evaluation prompts"
            )
            _sample_pool(pool_path, model, task, task.eval_prompts[: preset.pool_prompts], preset, s_seed + 1, pad_token,
                         progress)  # fmt: skip
        pool = [row for _, row in iter_jsonl(pool_path, "best-of-n pool")]

        for proxy in proxies(preset):
            pdir = RunDir(seed_dir / proxy.name)
            reward_dir = pdir / RunDir.REWARD_MODEL
            if not (reward_dir / META).is_file():
                say(f"[seed {s}] proxy {proxy.name}")
                chosen = all_pairs[: proxy.labels]
                if proxy.noise:
                    g = torch.Generator().manual_seed(s_seed + 7)
                    chosen = relabel(chosen, SimulatedRater(temperature=0.0, random_rate=proxy.noise, name="noisy"), g)
                write_pairs(pdir / RunDir.PAIRS, chosen)
                config = replace(preset.reward, ensemble=proxy.members, run=replace(preset.reward.run, seed=s_seed))
                batch = min(config.pairs_per_step, max(1, int(len(chosen) * (1 - config.val_fraction)) // 2))
                stages.reward_train(pdir, model, pdir / RunDir.PAIRS, replace(config, pairs_per_step=batch), pad_token,
                                    progress=progress)  # fmt: skip
            bon_path = pdir / "bon.json"
            if not bon_path.is_file():
                atomic_write_json(bon_path, _bon_curves(proxy, reward_dir, pool, preset))
            for objective, curve in read_json(bon_path).items():
                for point in curve:
                    rows.append(
                        {"labels": proxy.labels, "method": "best-of-n", "objective": objective, "noise": proxy.noise,
                         "n": point["n"], "step": "", "kl": point["kl"], "gold": point["gold"],
                         "proxy": point["proxy"], "seed": s}
                    )  # fmt: skip
            if (proxy.members > 1 or proxy.noise) and not preset.rl_levers:
                continue  # a lever's proxy: best-of-n only
            for objective in proxy.objectives():
                rl_dir = RunDir(pdir / proxy.rl_folder(objective))
                reward = str(reward_dir)
                if objective not in ("single", "mean"):
                    reward = _objective_view(reward_dir, pdir / f"reward-{objective}", objective, preset.std_coef)
                _rl_run(rl_dir, model, task_name, preset, reward, pad_token, progress, say,
                        f"[seed {s}] {preset.rl_method} against {proxy.name} ({objective})", prompts)  # fmt: skip
                for point in _rl_points(rl_dir / RunDir.METRICS, preset.window):
                    rows.append(
                        {"labels": proxy.labels, "method": preset.rl_method, "objective": objective,
                         "noise": proxy.noise, "n": "", **point, "seed": s}
                    )  # fmt: skip

        if preset.gold_rl:
            rl_dir = RunDir(seed_dir / "gold-rl")
            _rl_run(rl_dir, model, task_name, preset, "gold", pad_token, progress, say,
                    f"[seed {s}] {preset.rl_method} against the gold reward itself", prompts)  # fmt: skip
            for point in _rl_points(rl_dir / RunDir.METRICS, preset.window):
                rows.append({"labels": 0, "method": preset.rl_method, "objective": "gold", "noise": 0.0, "n": "",
                             **point, "seed": s})  # fmt: skip

    curves = aggregate(rows)
    fits = fit_curves(curves)
    out = {
        "model": model,
        "task": task_name,
        "seed": seed,
        "preset": asdict(preset),
        "fits": fits,
        "seconds_this_invocation": round(time.time() - started),  # a continued run: its last part only
    }
    atomic_write_text(root / "overopt.csv", csv_text(rows, CSV_COLUMNS, float_format=".6g", newline="\n"))
    atomic_write_json(root / "overopt.json", strict_json(out))  # a fit that never turns down: d* null
    atomic_write_bytes(root / "overopt.png", overopt_figure(curves, fits))
    say(format_fits(fits))
    return {"rows": rows, **out}


def _objective_view(reward_dir: Path, view: Path, objective: str, std_coef: float) -> str:
    """The ensemble with another aggregate: its members hard-linked (no second copy on disk), its
    description rewritten."""
    meta = read_json(reward_dir / META)
    if not (view / META).is_file():
        for m in meta["members"]:
            target = view / m["path"]
            if not target.exists():
                shutil.copytree(reward_dir / m["path"], target, copy_function=os.link)
        atomic_write_json(view / META, {**meta, "aggregate": objective, "std_coef": std_coef})
    return str(view)
