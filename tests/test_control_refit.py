"""Reward refits while PPO trains on: a refit is a pure function of its job, so a second process gives the same
weights to the bit as this one; the loop installs each refit at a fixed rollout, so where it ran changes no number;
failures in the worker are one clear error."""

import copy
import json

import numpy as np
import pytest
import torch

from rlhflab.control.envs import make_env, resolve_view
from rlhflab.control.loop import ControlConfig, preference_rl
from rlhflab.control.refit import RefitJob, Refits, make_job
from rlhflab.control.reward_net import RewardEnsemble, RewardNetConfig
from rlhflab.control.teachers import Teacher
from rlhflab.core.errors import RlhflabError


def job(seed: int = 0, dim: int = 5) -> tuple[RefitJob, RewardEnsemble]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(40, 6, dim)).astype(np.float32)
    truth = features @ np.linspace(-1, 1, dim)
    pairs = rng.integers(0, 40, size=(60, 2))
    labels = (truth[pairs[:, 0]].sum(-1) > truth[pairs[:, 1]].sum(-1)).astype(float)
    comparisons = np.concatenate([pairs, labels[:, None]], axis=1)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ensemble = RewardEnsemble(dim, members=2, hidden=8)
    config = RewardNetConfig(reward_epochs=3, reward_batch_size=16)
    return make_job(
        ensemble, features, comparisons, np.arange(20), config, torch.Generator().manual_seed(seed)
    ), ensemble


def run(refits: Refits, j: RefitJob):
    refits.submit(j)
    try:
        return refits.result()
    finally:
        refits.close()


def test_a_refit_gives_the_same_weights_here_and_in_a_second_process():
    j, ensemble = job()
    before = copy.deepcopy(ensemble.state_dict())
    here, there = run(Refits(process=False), copy.deepcopy(j)), run(Refits(process=True), copy.deepcopy(j))
    assert here.ensemble_state.keys() == there.ensemble_state.keys()
    assert all(torch.equal(here.ensemble_state[k], there.ensemble_state[k]) for k in here.ensemble_state)
    assert torch.equal(here.generator_state, there.generator_state) and here.metrics == there.metrics
    assert not torch.equal(here.generator_state, j.generator_state)  # the refit drew from the generator
    # the job trained a copy: the agent's reward is untouched until the loop installs the result
    assert all(torch.equal(before[k], v) for k, v in ensemble.state_dict().items())
    assert not torch.equal(here.ensemble_state["in_mean"], before["in_mean"])  # inputs normalised for the job
    assert here.metrics["reward_accuracy"] > 0.7


def test_refit_failures_are_one_clear_error():
    j, _ = job()
    j.first = j.first[..., :3]  # features of the wrong width: the worker's training fails
    with pytest.raises(RlhflabError, match="the reward refit failed in its process:(.|\n)*RuntimeError"):
        run(Refits(process=True), j)
    refits = Refits(process=False)
    with pytest.raises(RuntimeError, match="no refit was submitted"):
        refits.result()
    refits.submit(job()[0])
    with pytest.raises(RuntimeError, match="already running"):
        refits.submit(job()[0])
    stopped = Refits(process=True)
    stopped.submit(job()[0])
    stopped.worker.kill()
    with pytest.raises(RlhflabError, match="the reward refit process stopped"):
        stopped.result()
    assert stopped.worker is None


def test_a_reward_model_a_worker_cannot_import_is_refitted_here(monkeypatch):
    import subprocess

    class Mine(RewardEnsemble):  # as if defined in the user's script
        pass

    def no_worker(*args, **kwargs):
        raise AssertionError("a worker was started for a job it could not load")

    monkeypatch.setattr(subprocess, "Popen", no_worker)

    Mine.__module__ = "__main__"
    j, ensemble = job()
    theirs = copy.deepcopy(j)
    theirs.ensemble.__class__ = Mine
    refits = Refits(process=True)
    with pytest.warns(UserWarning, match="refits run in the loop's own process: .*__main__"):
        refits.submit(theirs)
    out = refits.result()
    assert refits.process is False and refits.worker is None
    here = run(Refits(process=False), j)
    assert all(torch.equal(here.ensemble_state[k], out.ensemble_state[k]) for k in here.ensemble_state)


def small(**change) -> ControlConfig:
    # 2 rollouts a round: each refit takes over after the next round's first rollout
    base = dict(total_steps=1536, n_steps=256, rounds=3, labels=30, initial_steps=200,
                reward=RewardNetConfig(reward_epochs=3))  # fmt: skip
    return ControlConfig(**{**base, **change})


def history(config: ControlConfig, **kwargs) -> list[dict]:
    torch.set_num_threads(1)
    return preference_rl(lambda: make_env("Reacher-v5"), resolve_view("true"), Teacher(), config, seed=3,
                         progress=False, **kwargs).history  # fmt: skip


def test_the_loop_gives_the_same_numbers_with_its_refits_here_or_in_a_second_process():
    there, here = history(small(), refit_process=True), history(small(), refit_process=False)
    assert json.dumps(there) == json.dumps(here)  # to the bit (and NaN, 'not measured', equal to NaN)
    waited = history(small(refit_lag=0))
    # round 0 ran on the first labels' reward in both; the refit on round 0's labels is the same job, which the
    # waiting loop installs before round 1 and the asynchronous one during round 1: the same weights, a row later
    assert here[0]["gold_return"] == waited[0]["gold_return"]
    assert here[1]["reward_loss"] == waited[0]["reward_loss"] and "reward_loss" not in here[0]
    assert here[1]["gold_return"] != waited[1]["gold_return"]  # the first rollout of round 1 had the older reward
    assert [r["labels"] for r in here] == [r["labels"] for r in waited] and here[-1]["labels"] == 30


def test_a_loop_that_stops_mid_refit_stops_its_worker_at_once():
    j, _ = job()
    j.config = RewardNetConfig(reward_epochs=10_000)  # minutes of work: the worker is busy when the loop stops
    refits = Refits(process=True)
    refits.submit(j)
    worker = refits.worker
    refits.close()
    assert worker.returncode == -9 and refits.worker is None and not refits.busy  # killed, not waited for
    refits.submit(job()[0])  # and the next refit starts a new worker
    assert refits.result().metrics["reward_accuracy"] > 0.7 and refits.worker is not None
    refits.close()
