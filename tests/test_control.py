"""Preference RL for control: the teacher's arithmetic by hand, the reward ensemble on a planted reward, the
recording wrapper against the environment's own numbers, bad input, and a test-sized loop on Reacher."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhflab.control.envs import NamedView, make_env, perceive, resolve_view
from rlhflab.control.reward_net import RewardEnsemble, RewardNetConfig, choose_queries, disagreement, train_reward
from rlhflab.control.teachers import SKIP, Teacher
from rlhflab.core.errors import ConfigError
from rlhflab.evaluation.diagnostics.stats import spearman

# ---------------------------------------------------------------- teachers


def test_teacher_returns_and_probabilities_by_hand():
    r = np.array([[1.0, 2.0, 3.0]])
    assert Teacher().returns(r)[0] == 6.0
    assert Teacher(gamma=0.5).returns(r)[0] == pytest.approx(0.25 * 1 + 0.5 * 2 + 3)  # the clip's end counts most
    exact = Teacher(random_rate=0)
    assert exact.probability(np.array([2.0, 1.0, 1.0]), np.array([1.0, 2.0, 1.0])).tolist() == [1.0, 0.0, 0.5]
    soft = Teacher(beta=2.0, random_rate=0)
    assert soft.probability(np.array([1.0]), np.array([0.5]))[0] == pytest.approx(1 / (1 + math.exp(-1.0)))
    # a mistake flips: P = eps (1 - p) + (1 - eps) p; random answers pull towards 0.5
    assert Teacher(mistake=0.2, random_rate=0).probability(np.array([1.0]), np.array([0.0]))[0] == pytest.approx(0.8)
    assert Teacher(mistake=0.2, random_rate=0.5).probability(np.array([1.0]), np.array([0.0]))[0] == pytest.approx(
        0.25 + 0.5 * 0.8
    )
    assert Teacher(beta=1e6, random_rate=0).probability(np.array([-1e6]), np.array([1e6]))[0] == 0.0  # no overflow


def test_teacher_labels_skips_and_equal_calls():
    teacher = Teacher(random_rate=0, skip_below=-10.0, equal_within=0.5)
    a = np.array([[1.0, 1.0], [-8.0, -8.0], [1.0, 0.0], [0.0, 0.0]])
    b = np.array([[0.0, 0.0], [-7.0, -7.0], [0.8, 0.0], [1.0, 1.0]])
    labels = teacher.label(a, b, np.random.default_rng(0))
    assert labels.tolist() == [1.0, SKIP, 0.5, 0.0]
    noisy = Teacher(random_rate=1.0).label(np.ones((2000, 3)), np.zeros((2000, 3)), np.random.default_rng(1))
    assert 0.45 < noisy.mean() < 0.55  # all answers at random: a coin
    with pytest.raises(ConfigError, match="--teacher-gamma must be in"):
        Teacher(gamma=0)


# ---------------------------------------------------------------- the reward ensemble


def planted(n: int, rng: np.random.Generator, length: int = 10, dim: int = 4):
    """Segments of random step features whose true per-step reward is w . x."""
    w = np.array([1.0, -2.0, 0.5, 0.0])[:dim]
    x = rng.normal(size=(n, length, dim)).astype(np.float32)
    return x, x @ w


def test_the_ensemble_learns_a_planted_reward_from_comparisons():
    rng = np.random.default_rng(0)
    x, r = planted(400, rng)
    ens = RewardEnsemble(4, members=3, hidden=32)
    ens.fit_inputs(x)
    i, j = rng.integers(0, 400, 300), rng.integers(0, 400, 300)
    labels = Teacher(random_rate=0.1).label(r[i], r[j], rng)
    config = RewardNetConfig(reward_epochs=30, reward_members=3)
    stats = train_reward(ens, x[i], x[j], labels, config, torch.Generator().manual_seed(0))
    assert stats["reward_accuracy"] > 0.8
    test_x, test_r = planted(200, np.random.default_rng(1))
    learned = ens.segment_returns(test_x).mean(0)
    assert spearman(learned.tolist(), test_r.sum(-1).tolist()) > 0.9  # held-out segments it never compared
    ens.fit_outputs(test_x)
    step = ens.reward(test_x[:, 0, :2].reshape(200, 2), test_x[:, 0, 2:].reshape(200, 2))
    assert abs(step.mean()) < 0.3 and 0.5 < step.std() < 1.5  # standardised for the agent
    # the agent's fast numpy path is the ensemble's own forward pass
    x0 = torch.as_tensor(test_x[:, 0])
    slow = ((ens(x0).mean(0) - ens.out_mean) / ens.out_std).detach().numpy()
    assert np.allclose(step, slow, atol=1e-5)
    ens.load_state_dict(RewardEnsemble(4, members=3, hidden=32).state_dict())  # new weights are read again
    assert not np.allclose(ens.reward(test_x[:, 0, :2], test_x[:, 0, 2:]), step, atol=1e-3)


def test_disagreement_by_hand_and_query_choice():
    # two members: one says +2 nats for the first, the other -2; a pair both agree on has no spread
    d = disagreement(np.array([[2.0, 1.0], [-2.0, 1.0]]), np.array([[0.0, 0.0], [0.0, 0.0]]))
    s = 1 / (1 + math.exp(-2))
    assert d[0] == pytest.approx(abs(s - (1 - s)) / 2) and d[1] == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    pairs = choose_queries(None, np.zeros((10, 3, 2)), np.arange(10), 50, "random", rng)
    assert pairs.shape == (50, 2) and (pairs[:, 0] != pairs[:, 1]).all()
    ens = RewardEnsemble(2, members=3, hidden=8)
    x = np.random.default_rng(2).normal(size=(30, 3, 2)).astype(np.float32)
    chosen = choose_queries(ens, x, np.arange(30), 5, "disagreement", np.random.default_rng(3))
    everything = choose_queries(ens, x, np.arange(30), 25, "random", np.random.default_rng(3))  # the same draws
    r = ens.segment_returns(x[everything.reshape(-1)]).reshape(3, 25, 2)
    spread = disagreement(r[..., 0], r[..., 1])
    assert sorted(map(tuple, chosen.tolist())) == sorted(map(tuple, everything[np.argsort(-spread)[:5]].tolist()))


# ---------------------------------------------------------------- environments and views


class DictObs(gym.Env):
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (2,))})
    action_space = gym.spaces.Box(-1, 1, (1,))


class Discrete(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Discrete(3)


def test_bad_environments_and_views_are_one_line_errors():
    with pytest.raises(
        ConfigError, match=r"'Reacher-v9' is not a gymnasium environment id \(did you mean .*Reacher-v5"
    ):
        make_env("Reacher-v9")
    with pytest.raises(ConfigError, match="observations must be a flat Box"):
        make_env("test_control:DictObs")
    with pytest.raises(ConfigError, match="actions must be a flat Box"):
        make_env("test_control:Discrete")
    with pytest.raises(ConfigError, match="cannot import 'Nope'"):
        make_env("test_control:Nope")
    with pytest.raises(ConfigError, match="--teacher-view 'sideways'"):
        resolve_view("sideways")
    obs = np.zeros(10)
    for bad, message in ((lambda *a: np.ones(2), "not one number"), (lambda *a: float("nan"), "finite")):
        with pytest.raises(ConfigError, match=message):
            perceive(NamedView(bad, about="mine"), obs, np.zeros(2), obs, {}, 0.0)
    assert perceive(resolve_view("true"), obs, np.zeros(2), obs, {}, -1.5) == -1.5


# ---------------------------------------------------------------- the loop


def test_recorded_segments_match_the_environments_own_returns():
    from rlhflab.control.loop import ControlConfig, preference_rl

    torch.set_num_threads(1)
    config = ControlConfig(total_steps=512, n_steps=256, rounds=2, true_reward=True, labels=0, segment_length=25)
    rows = []
    result = preference_rl(lambda: make_env("Reacher-v5"), resolve_view("reacher-side"), Teacher(), config,
                           seed=0, metrics=rows.append, progress=False)  # fmt: skip
    assert result.ensemble is None and len(result.comparisons) == 0 and [r["round"] for r in rows] == [0, 1]
    bank = result.bank
    assert bank.obs.shape[1:] == (25, 10) and bank.acts.shape[1:] == (25, 2) and bank.states.shape[-1] == 8
    assert len(bank) == 2 * 512 // 50  # Reacher's 50-step episodes: two 25-step segments each
    # gold is the env's reward (the side view sees less: it never perceives the effort, so it is higher)
    assert (bank.perceived.sum(-1) >= bank.gold.sum(-1)).all()
    # the state recorded with a step is the one its observation came from (Reacher: obs[4:6] is qpos[2:4])
    assert np.allclose(bank.states[..., 2:4], bank.obs[..., 4:6], atol=1e-6)
    # PPO on the true reward saw the env's returns: proxy == gold
    assert rows[-1]["proxy_return"] == pytest.approx(rows[-1]["gold_return"])


def test_a_test_sized_preference_run_through_the_command_line(tmp_path):
    import json

    from clirun import rlhflab
    from stable_baselines3 import PPO

    run = tmp_path / "run"
    out = rlhflab("control", "train", "--run-dir", run, "--total-steps", 1024, "--n-steps", 256, "--labels", 40,
                  "--rounds", 2, "--initial-steps", 300, "--eval-episodes", 3, "--reward-epochs", 5,
                  "--teacher-view", "reacher-side", "--quiet", check=True)  # fmt: skip
    assert "Spearman" in out.stdout and "look done" in out.stdout
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1] and rows[-1]["labels"] == 40
    assert all(k in rows[0] for k in ("gold_return", "perceived_return", "proxy_return", "env_steps", "spearman_gold"))
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) >= {"policy", "nothing", "random"} and summary["policy"]["episodes"] == 3
    assert summary["nothing"]["perceived_return"] > summary["nothing"]["gold_return"] - 1e-9
    PPO.load(run / "policy.zip", device="cpu")
    segments = np.load(run / "segments.npz")
    assert segments["comparisons"].shape == (40, 3) and segments["comparisons"][:, :2].max() < len(segments["gold"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["control"]["status"] == "done" and manifest["stages"]["control"]["config"]["labels"] == 40
    # the saved reward and policy reproduce the run's own evaluation
    from rlhflab.control.measure import agent_policy, evaluate_policy
    from rlhflab.pipeline.control import EVAL_SEED, load_reward
    from rlhflab.run.rundir import RunDir

    again = evaluate_policy(agent_policy(PPO.load(run / "policy.zip", device="cpu")), lambda: make_env("Reacher-v5"),
                            resolve_view("reacher-side"), 3, 0 + EVAL_SEED, 25, load_reward(RunDir(run)))  # fmt: skip
    assert again["spearman_gold"] == pytest.approx(summary["policy"]["spearman_gold"], abs=1e-12)
    assert again["proxy_return"] == pytest.approx(summary["policy"]["proxy_return"], rel=1e-6)


def test_the_loop_takes_your_own_reward_model():
    from rlhflab.control.loop import ControlConfig, preference_rl

    torch.set_num_threads(1)
    config = ControlConfig(total_steps=256, n_steps=128, rounds=2, labels=10, initial_steps=100,
                           reward=RewardNetConfig(reward_epochs=2))  # fmt: skip
    mine = RewardEnsemble(12, members=2, hidden=8)
    result = preference_rl(lambda: make_env("Reacher-v5"), resolve_view("true"), Teacher(), config, progress=False,
                           ensemble=mine)  # fmt: skip
    assert result.ensemble is mine and len(mine.nets) == 2 and len(result.comparisons) == 10
    with pytest.raises(ConfigError, match="reads 7 features a step; this env has 10 observation \\+ 2 action"):
        preference_rl(lambda: make_env("Reacher-v5"), resolve_view("true"), Teacher(), config, progress=False,
                      ensemble=RewardEnsemble(7))  # fmt: skip


def test_an_interrupted_run_resumes_from_its_last_round(tmp_path, monkeypatch):
    import json

    from clirun import rlhflab

    from rlhflab.control.loop import ControlConfig
    from rlhflab.pipeline import control as pipeline
    from rlhflab.run.rundir import RunDir

    torch.set_num_threads(1)
    # 2 rollouts a round: the refit on round 1's labels is still running when round 1's checkpoint is written
    config = ControlConfig(total_steps=768, n_steps=128, rounds=3, labels=12, initial_steps=100, eval_episodes=2,
                           reward=RewardNetConfig(reward_epochs=2))  # fmt: skip

    def rows(run):
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    whole = tmp_path / "whole"
    pipeline.control_train(RunDir(whole), "Reacher-v5", "true", Teacher(), config, progress=False)
    save = pipeline.save_round

    def crash_after_round_1(run, state):
        save(run, state)
        if state.round == 1:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    monkeypatch.setattr(pipeline, "save_round", crash_after_round_1)
    with pytest.raises(KeyboardInterrupt):
        pipeline.control_train(RunDir(cut), "Reacher-v5", "true", Teacher(), config, progress=False)
    monkeypatch.setattr(pipeline, "save_round", save)
    before = rows(cut)
    assert [r["round"] for r in before] == [0, 1] and before == rows(whole)[:2]  # same seed, same first rounds
    assert json.loads((cut / "manifest.json").read_text())["stages"]["control"]["status"] == "interrupted"
    assert json.loads((RunDir(cut).latest_checkpoint("control") / "state.json").read_text())["refit_pending"]
    out = rlhflab("control", "train", "--resume", cut, "--quiet", check=True)
    assert "Spearman" in out.stdout
    after = rows(cut)
    assert [r["round"] for r in after] == [0, 1, 2] and after[:2] == before  # rounds 0-1 kept, not run again
    assert after[-1]["labels"] == 12 and (cut / "policy.zip").is_file()
    # the running refit was run again from the checkpoint's state: the same reward as the uninterrupted run's
    assert after[-1]["reward_loss"] == rows(whole)[-1]["reward_loss"]
    mine, theirs = (torch.load(r / "reward_model.pt", weights_only=True)["state"] for r in (cut, whole))
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert json.loads((cut / "manifest.json").read_text())["stages"]["control"]["status"] == "done"
    missing = rlhflab("control", "train", "--resume", whole / "nothing-here")
    assert missing.returncode != 0 and "no such run directory" in missing.stderr


def test_the_3d_reach_and_its_cameras_by_hand():
    from rlhflab.control.envs import CAMERAS, REACH3D, VIEWS, Camera, camera_offset, reach3d_distance

    overhead = CAMERAS["overhead-camera"]
    top = np.array(overhead.position)
    obs = np.zeros(23)
    obs[17:20] = [top[0] + 0.1, top[1], -0.275]  # the object, 0.1 m off the camera's axis
    obs[14:17] = [obs[17], obs[18], 0.3]  # the fingertip straight above it, 0.575 m up: off the camera's ray
    assert camera_offset(obs, overhead) == pytest.approx(0.1 * 1.475 / 0.9 - 0.1)
    obs[14:17] = top + (obs[17:20] - top) * (0.9 / 1.475)  # on the ray through the object, 0.575 m above it
    assert camera_offset(obs, overhead) == pytest.approx(0.0, abs=1e-12) and reach3d_distance(obs) == pytest.approx(
        0.575 * np.linalg.norm([0.1, 0, 1.475]) / 1.475
    )
    view = VIEWS["overhead-camera"]
    assert view.looks_done(obs) and not view.is_done(obs)  # hovering in front of the camera
    obs[14:17] = obs[17:20] + [0.03, 0.04, 0.0]  # beside the object, touching it
    assert camera_offset(obs, overhead) == pytest.approx(0.05) and view.is_done(obs) and not view.looks_done(obs)
    # any camera: a sideways step at the target's depth is seen at its true length; along the ray, not at all
    side = Camera((0.0, -2.0, 0.0), (0.0, 0.0, 0.0))
    assert side.offset([0.3, 0.0, 0.4], [0.0, 0.0, 0.0]) == pytest.approx(0.5)
    assert side.offset([0.0, -1.0, 0.0], [0.0, 0.0, 0.0]) == pytest.approx(0.0)
    assert side.offset([0.1, -1.0, 0.0], [0.0, 0.0, 0.0]) == pytest.approx(0.2)  # half the depth: twice the size
    env = make_env(REACH3D)
    first, _ = env.reset(seed=3)
    action = np.full(7, 0.5, np.float32)
    after, reward, *_ = env.step(action)
    assert reward == pytest.approx(-reach3d_distance(after) - 0.1 * 7 * 0.25)  # gold: reach in 3-D, with effort
    shoulder = VIEWS["shoulder-camera"]
    assert shoulder.reward(first, action, after, {}) == pytest.approx(-camera_offset(after, CAMERAS["shoulder-camera"]))
