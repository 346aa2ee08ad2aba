"""Christiano et al.'s loop: the agent learns a reward from a teacher's comparisons of its own clips.

Each round: PPO (stable-baselines3, on the learned reward) trains for its share of the env steps;
its rollouts, recorded by ``LearnedRewardEnv``, are cut into segments; pairs of the recent segments
are chosen (at random or where the reward ensemble disagrees), the teacher labels them, and the
ensemble is refitted on every label so far. The first labels come before any training, from the
untrained policy's clips (``initial_share`` of the budget); the rest are spread evenly over the
rounds. With ``true_reward`` the same code trains PPO on the environment's reward and asks for no
labels: the baseline every preference run is measured against.

The reward is refitted while PPO trains on, as in Christiano et al.'s asynchronous loop: the refit on
round r's labels runs in a second process (``rlhflab.control.refit``) while PPO trains the first
``refit_lag`` of round r+1's rollouts on the previous reward, then takes over. The switch happens at
a fixed rollout, not when the refit happens to finish, so a run's numbers do not depend on the
machine's speed, nor on whether the refit ran in a second process or in this one. With
``refit_lag=0`` PPO waits between rounds for each refit.

Each round logs one row: env steps, labels, the mean episode return under gold (the environment's
reward), under the teacher's view, and under the learned reward (proxy), the learned reward's
accuracy on the round's new labels before it saw them, the Spearman correlation between learned
and true returns of the round's segments, and the loss and accuracy of the latest refit on its
labels (with a ``refit_lag``: the refit that took over during this round).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from tqdm.auto import tqdm

from rlhflab.control.envs import NamedView
from rlhflab.control.measure import learned_vs_true
from rlhflab.control.refit import Refits, make_job
from rlhflab.control.reward_net import RewardEnsemble, RewardNetConfig, choose_queries
from rlhflab.control.segments import LearnedRewardEnv, SegmentBank, sim_state
from rlhflab.control.teachers import SKIP, Teacher
from rlhflab.core import threads
from rlhflab.core.config import check
from rlhflab.core.errors import ConfigError


@dataclass(frozen=True)
class ControlConfig:
    total_steps: int = 153_600
    """Env steps PPO trains for (the labels' segments are cut from these same steps)."""
    labels: int = 900
    """Comparisons the teacher is asked for in all (skipped queries are not counted)."""
    rounds: int = 10
    """Times the reward is refitted while PPO trains."""
    initial_share: float = 0.25
    """Share of the labels asked before training, on the untrained policy's segments."""
    initial_steps: int = 2_000
    """Env steps of the untrained policy recorded for those first labels."""
    segment_length: int = 25
    """Steps per segment (clip)."""
    query: str = "disagreement"
    """How pairs are chosen: disagreement (the pairs, of 5x as many drawn, on which the reward ensemble's members
    disagree most: Christiano et al.'s choice; measured on Reacher, a reward that ranks the final policy's segments
    far better), or random."""
    pool_rounds: int = 2
    """Queries are drawn among the segments of this many latest rounds."""
    refit_lag: float = 0.75
    """Share of the next round's rollouts PPO trains on the previous reward while the reward is refitted on a
    round's labels (rounded down; 0.75: the 900-label refit, ~7 s on two cores, ends within 6 of a round's 8
    rollouts). 0: PPO waits for every refit between rounds."""
    true_reward: bool = False
    """Train PPO on the environment's own reward and ask for no labels (the baseline)."""
    n_steps: int = 2048
    """PPO rollout length (stable-baselines3's default)."""
    batch_size: int = 64
    """PPO minibatch size."""
    n_epochs: int = 10
    """PPO epochs per rollout."""
    learning_rate: float = 3e-4
    """PPO learning rate."""
    eval_episodes: int = 20
    """Episodes of the final policy (and of the no-action and random baselines) evaluated at the end."""
    reward: RewardNetConfig = field(default_factory=RewardNetConfig)

    def __post_init__(self) -> None:
        check(self.total_steps >= self.n_steps, "total_steps", self.total_steps, f">= n_steps ({self.n_steps})")
        check(self.labels >= 0, "labels", self.labels, ">= 0")
        check(self.rounds >= 1, "rounds", self.rounds, ">= 1")
        check(0 <= self.initial_share <= 1, "initial_share", self.initial_share, "in [0, 1]")
        check(self.segment_length >= 1, "segment_length", self.segment_length, ">= 1")
        check(self.query in ("random", "disagreement"), "query", self.query, "'random' or 'disagreement'")
        check(self.pool_rounds >= 1, "pool_rounds", self.pool_rounds, ">= 1")
        check(self.eval_episodes >= 1, "eval_episodes", self.eval_episodes, ">= 1")
        check(0 <= self.refit_lag <= 1, "refit_lag", self.refit_lag, "in [0, 1]")

    def schedule(self) -> list[int]:
        """Labels asked before training (index 0) and after each round but the last (1..rounds-1)."""
        if self.true_reward or self.labels == 0:
            return [0] * self.rounds
        first = round(self.labels * self.initial_share) if self.rounds > 1 else self.labels
        rest = self.labels - first
        later = [rest // (self.rounds - 1) + (i < rest % (self.rounds - 1)) for i in range(self.rounds - 1)]
        return [first, *later]

    def rollouts(self) -> list[int]:
        """PPO rollouts in each round (the total rounded up to whole rollouts)."""
        total = math.ceil(self.total_steps / self.n_steps)
        return [total // self.rounds + (i < total % self.rounds) for i in range(self.rounds)]


@dataclass
class ControlResult:
    model: PPO
    ensemble: RewardEnsemble | None
    bank: SegmentBank
    comparisons: np.ndarray
    """[n, 3]: first segment, second segment (indices into ``bank``), label (P(first preferred))."""
    summary: dict
    history: list[dict] = field(default_factory=list)


@dataclass
class RoundState:
    """The loop after a round: what ``checkpoint`` receives and ``resume`` continues from."""

    round: int
    model: PPO | None
    ensemble_state: dict | None
    bank: SegmentBank
    comparisons: np.ndarray
    history: list[dict]
    asked: int
    skipped: int
    env_steps: int
    rng_state: dict
    generator_state: torch.Tensor
    teacher_state: dict | None = None
    """The teacher's ``state()`` (a teacher of people: the answers taken so far)."""
    refit_pending: bool = False
    """A refit on this round's labels was running (``refit_lag``): resuming runs it again from this state."""
    model_loader: Callable | None = None
    """On resume: ``env -> PPO`` (the saved agent, attached to the loop's env)."""


class _Round(BaseCallback):
    """The progress bar, and a running refit installed after ``install_at`` rollouts of the round."""

    def __init__(self, bar):
        super().__init__()
        self.bar = bar
        self.rollouts = 0
        self.install_at = 0
        self.install: Callable[[], None] | None = None

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_rollout_end(self) -> None:  # before PPO's update on this rollout: the next rollout has the new reward
        self.rollouts += 1
        if self.install is not None and self.rollouts >= self.install_at:
            self.install()
            self.install = None


def _mean(values) -> float:
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else float("nan")


def _episode_stats(episodes: list[dict], prefix: str = "") -> dict[str, float]:
    out = {f"{prefix}{k}_return": _mean([e[k] for e in episodes]) for k in ("gold", "perceived", "proxy")}
    out[f"{prefix}looks_done_not_done"] = _mean([e["fooled"] for e in episodes])
    out[f"{prefix}episodes"] = len(episodes)
    return out


def preference_rl(
    env_fn: Callable[[], object],
    view: NamedView,
    teacher: Teacher,
    config: ControlConfig,
    seed: int = 0,
    metrics: Callable[[dict], None] | None = None,
    progress: bool = True,
    ensemble: RewardEnsemble | None = None,
    checkpoint: Callable[[RoundState], None] | None = None,
    resume: RoundState | None = None,
    refit_process: bool | None = None,
) -> ControlResult:
    """Train an SB3 PPO agent from ``teacher``'s preferences (or on the true reward, ``config.true_reward``).

    ``env_fn()`` makes a gymnasium env (``rlhflab.control.envs.make_env``); ``view`` is what the teacher
    perceives; ``teacher``: a ``Teacher``, or anything with its ``ask``, ``state``, ``restore`` and
    ``late_answers`` (``rlhflab.control.people.People``: people in the labelling page); ``metrics`` receives one row per round; ``ensemble``: your own reward model (a ``RewardEnsemble``
    over obs_dim + act_dim features, any member networks), else one from ``config.reward``. Randomness: ``seed``
    seeds the env, PPO, the reward ensemble and the teacher once. ``checkpoint`` receives the loop's state after
    every round; ``resume`` (such a state) continues from it: the rounds done are not run again (PPO's own
    sampling noise is not part of SB3's saved model, so a resumed run is not bit-identical to an uninterrupted
    one). ``refit_process``: run asynchronous refits in a second process (None: when this process may use two
    cores or more); the numbers are the same either way."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    env = env_fn()
    venv = DummyVecEnv([lambda: Monitor(env)])
    venv.seed(seed)
    obs_dim, act_dim = venv.observation_space.shape[0], venv.action_space.shape[0]
    if ensemble is not None and ensemble.in_mean.numel() != obs_dim + act_dim:
        raise ConfigError(
            f"the reward ensemble reads {ensemble.in_mean.numel()} features a step; this env has {obs_dim} "
            f"observation + {act_dim} action values"
        )
    if config.true_reward:
        ensemble = None
    elif ensemble is None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            ensemble = RewardEnsemble(obs_dim + act_dim, config.reward.reward_members, config.reward.reward_hidden)
    agent_env = LearnedRewardEnv(
        venv, view, config.segment_length, [env], reward_fn=None if ensemble is None else ensemble.reward
    )
    model = PPO(
        "MlpPolicy",
        agent_env,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        learning_rate=config.learning_rate,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    bank = SegmentBank.empty(config.segment_length, obs_dim, act_dim, len(sim_state(env)))
    comparisons = np.zeros((0, 3))
    history: list[dict] = []
    schedule, rollouts = config.schedule(), config.rollouts()
    asked = skipped = 0
    start = 0
    lagged = config.refit_lag > 0
    refits = Refits(lagged and (threads.cpus() >= 2 if refit_process is None else refit_process))
    fitted: dict[str, float] = {}  # the metrics of the refit installed during the round (refit_lag)

    def install() -> dict[str, float]:
        """The running refit's reward, from now on the agent's."""
        result = refits.result()
        ensemble.load_state_dict(result.ensemble_state)
        generator.set_state(result.generator_state)
        fitted.update(result.metrics)
        return result.metrics

    def recent(round_: int) -> np.ndarray:
        """The segments of the ``pool_rounds`` rounds up to ``round_``: queries and the output normalisation."""
        return np.nonzero(bank.round >= round_ - config.pool_rounds + 1)[0]

    def launch(round_: int, features: np.ndarray) -> None:
        refits.submit(make_job(ensemble, features, comparisons, recent(round_), config.reward, generator))

    if resume is not None:
        model = resume.model_loader(agent_env)
        if ensemble is not None and resume.ensemble_state is not None:
            ensemble.load_state_dict(resume.ensemble_state)
        bank, comparisons, history = resume.bank, resume.comparisons, list(resume.history)
        asked, skipped, agent_env.steps = resume.asked, resume.skipped, resume.env_steps
        rng.bit_generator.state = resume.rng_state
        generator.set_state(resume.generator_state)
        teacher.restore(resume.teacher_state)
        start = resume.round + 1
        if resume.refit_pending and ensemble is not None:  # the refit that was running: again, from the same state
            launch(resume.round, bank.features())
    total = sum(rollouts) * config.n_steps + (config.initial_steps if schedule[0] else 0)
    done = sum(rollouts[:start]) * config.n_steps + (config.initial_steps if schedule[0] and start else 0)
    bar = tqdm(total=total, initial=done, desc="preference rl" if ensemble else "ppo (true reward)", unit="step",
               disable=not progress)  # fmt: skip

    def ask(n: int, round_: int, wait: bool) -> dict[str, float]:
        """Ask for ``n`` labels among the latest rounds' segments and start refitting on all labels so far; ``wait``
        (or without a ``refit_lag``): the refitted reward is the agent's when this returns."""
        nonlocal comparisons, asked, skipped
        if n == 0 and not teacher.late_answers or ensemble is None:
            return {}
        features = bank.features()  # [segments, H, obs + act]: every use below indexes this one array
        trained = len(comparisons) > 0
        pairs = choose_queries(ensemble if trained else None, features, recent(round_), n, config.query, rng)
        asked += len(pairs)
        size = len(bank)
        pairs, labels = teacher.ask(bank, pairs, rng, round_)  # people may answer late or add segments back
        if len(bank) != size:
            features = bank.features()
        keep = labels != SKIP
        skipped += int((~keep).sum())
        new = np.concatenate([pairs[keep], labels[keep, None]], axis=1)
        out: dict[str, float] = {}
        if trained and len(new):  # the current reward on labels it has not seen yet
            r = ensemble.segment_returns(features[new[:, :2].astype(int).reshape(-1)]).mean(0).reshape(-1, 2)
            strict = new[:, 2] != 0.5
            if strict.any():
                out["reward_heldout_accuracy"] = float(((r[:, 0] > r[:, 1]) == (new[:, 2] > 0.5))[strict].mean())
        comparisons = np.concatenate([comparisons, new])
        if len(comparisons) == 0:  # nobody has answered yet (people), or every query was skipped
            return out
        if refits.busy:  # a refit still running (people's answers taken on resume): it goes first
            install()
        launch(round_, features)
        if wait or not lagged:
            out.update(install())
            fitted.clear()
        return out

    callback = _Round(bar)
    try:
        if schedule[0] and ensemble is not None and start == 0:  # the first labels: the untrained policy's clips
            obs = agent_env.reset()
            for _ in range(config.initial_steps):
                action, _ = model.predict(obs, deterministic=False)
                obs, *_ = agent_env.step(action)
            bar.update(config.initial_steps)
            agent_env.take_segments(bank)
            agent_env.take_episodes()
            ask(schedule[0], 0, wait=True)
        if resume is not None and teacher.late_answers and start < config.rounds:
            ask(0, resume.round, wait=True)  # the answers people gave while the run was down: taken before training
        for r in range(start, config.rounds):
            agent_env.round = r
            callback.rollouts, callback.install_at, callback.install = 0, int(config.refit_lag * rollouts[r]), None
            if refits.busy and callback.install_at == 0:
                install()
            elif refits.busy:
                callback.install = install
            model.learn(rollouts[r] * config.n_steps, reset_num_timesteps=r == 0, callback=callback)
            if refits.busy:  # a round too short to reach the switch
                install()
            agent_env.take_segments(bank)
            row = {"round": r, "env_steps": agent_env.steps, "ppo_steps": model.num_timesteps}
            row.update(_episode_stats(agent_env.take_episodes()))
            if ensemble is not None:
                row.update(learned_vs_true(ensemble, bank, np.nonzero(bank.round == r)[0]))
            row.update(fitted)
            fitted.clear()
            if r + 1 < config.rounds:
                row.update(ask(schedule[r + 1], r, wait=False))
            row.update(labels=len(comparisons), queries_skipped=skipped)
            history.append(row)
            if metrics is not None:
                metrics(row)
            bar.set_postfix(gold=f"{row['gold_return']:.1f}", labels=len(comparisons))
            if checkpoint is not None:
                checkpoint(RoundState(r, model, None if ensemble is None else ensemble.state_dict(), bank,
                                      comparisons, history, asked, skipped, agent_env.steps, rng.bit_generator.state,
                                      generator.get_state(), teacher.state(), refits.busy))  # fmt: skip
    finally:
        refits.close()
    bar.close()
    summary = {"labels": len(comparisons), "queries": asked, "queries_skipped": skipped, "env_steps": agent_env.steps}
    summary.update(history[-1] if history else {})
    return ControlResult(model, ensemble, bank, comparisons, summary, history)
