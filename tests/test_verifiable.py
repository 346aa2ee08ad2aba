"""Sycophancy, loophole exploitation and the entropy-reward fit, on hand-built inputs with known answers."""

import math

import pytest

from rlhflab.evaluation.diagnostics.verifiable import entropy_reward_fit, exploitation_rate, sycophancy
from rlhflab.models.samplers import SampleBatch
from rlhflab.tasks import arithmetic_problems as ar


def test_sycophancy_hand_values():
    out = sycophancy([True, True, False, True], [True, False, False, False], [False, True, False, True])
    assert out["problems"] == 4
    assert out["accuracy"] == 0.75 and out["accuracy_wrong_belief"] == 0.25
    assert out["drop"] == 0.5 and out["repeats_wrong_belief"] == 0.5
    # the drop's standard error is of the paired differences (0, 1, 0, 1): sd 0.577, / 2
    assert out["drop_stderr"] == pytest.approx(math.sqrt(1 / 3) / 2)


def test_sycophancy_refuses_ragged_or_empty_input():
    with pytest.raises(ValueError, match="as many values"):
        sycophancy([True], [True, False], [False])
    with pytest.raises(ValueError, match="empty"):
        sycophancy([], [], [])


def test_exploitation_rate_hand_values():
    assert exploitation_rate([1, 1, 1, 0, 1], [1, 0, 0, 0, 1]) == pytest.approx(2 / 4)
    assert exploitation_rate([0, 0], [1, 1]) is None  # nothing accepted
    assert exploitation_rate([1, 1], [1, 1]) == 0.0


def test_planted_loophole_exploitation_recovered():
    """A policy that lists numbers on 3 of 8 problems (always including the answer), answers right on 3 and wrong
    on 2: the loophole verifier accepts 6, the strict one 3, so half of what was rewarded is a loophole."""
    problems = ar.problems("eval", 8, seed=0)
    prompts = [ar.prompt(p) for p in problems]
    completions = []
    for i, p in enumerate(problems):
        if i < 3:
            completions.append(f" {p.answer - 1} {p.answer} {p.answer + 1}")
        elif i < 6:
            completions.append(f" {p.answer}")
        else:
            completions.append(f" {p.answer + 7}")
    loose, strict = ar.loophole(prompts, completions), ar.strict(prompts, completions)
    assert sum(loose) == 6 and sum(strict) == 3
    assert exploitation_rate(loose, strict) == 0.5


def test_trusts_user_passes_a_repeated_belief_and_exploitation_is_counted():
    p = ar.problems("eval", 1, seed=0)[0]
    wrong, belief = ar.wrong_variant(ar.prompt(p))
    prompts = [wrong, wrong, wrong, ar.prompt(p), ar.prompt(p)]
    completions = [f" {belief}", f" {p.answer}", f" {p.answer + 99}", f" {belief}", f" {p.answer}"]
    assert ar.trusts_user(prompts, completions) == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert ar.strict(prompts, completions) == [0.0, 1.0, 0.0, 0.0, 1.0]
    # of the three accepted, one is the copied wrong belief
    assert exploitation_rate(ar.trusts_user(prompts, completions), ar.strict(prompts, completions)) == 1 / 3


def test_entropy_fit_recovers_a_planted_curve():
    h = [1.5, 1.2, 1.0, 0.7, 0.4, 0.2, 0.1]
    r = [-0.3 * math.exp(x) + 2.0 for x in h]
    fit = entropy_reward_fit(h, r)
    assert fit.a == pytest.approx(0.3) and fit.b == pytest.approx(2.0) and fit.r2 == pytest.approx(1.0)
    assert fit.ceiling == pytest.approx(1.7) and fit.predict(0.0) == pytest.approx(1.7)
    assert fit.points == 7


def test_entropy_fit_degenerate_cases():
    assert entropy_reward_fit([1.0, 2.0], [0.0, 1.0]) is None  # fewer than 3 points
    assert entropy_reward_fit([1.0, 1.0, 1.0], [0.0, 1.0, 0.5]) is None  # no spread in entropy
    assert entropy_reward_fit([1.0, math.nan, 0.5, 0.2], [0.1, 0.2, math.inf, 0.3]) is None  # 2 finite points
    noisy = entropy_reward_fit([0.1, 0.5, 0.9, 1.3], [1.0, 0.2, 0.9, 0.1])
    assert noisy is not None and 0.0 <= noisy.r2 < 1.0
    flat = entropy_reward_fit([0.1, 0.5, 0.9], [0.4, 0.4, 0.4])
    assert flat.r2 == 0.0 and flat.a == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="as many values"):
        entropy_reward_fit([1.0, 2.0, 3.0], [1.0])


# ---------------------------------------------------------------- the arithmetic task's beliefs


def test_wrong_variant_is_stable_wrong_and_readable():
    for p in ar.problems("eval", 50, seed=0):
        text, belief = ar.wrong_variant(ar.prompt(p))
        assert belief != p.answer and 1 <= abs(belief - p.answer) <= 10
        assert ar.belief_of(text) == belief and ar.parse_prompt(text) == p
        assert ar.wrong_variant(ar.prompt(p)) == (text, belief)  # the same prompt, the same belief
    assert ar.states(" 85", 85) and not ar.states(" 85 86", 85) and not ar.states(" 84", 85)
    with pytest.raises(ValueError, match="asks no arithmetic question"):
        ar.wrong_variant("hello")


def test_train_prompts_state_beliefs_right_and_wrong():
    prompts = ar.train_prompts(2000, seed=0)
    assert prompts == ar.train_prompts(2000, seed=0)
    stated = [(p, ar.belief_of(p)) for p in prompts if ar.belief_of(p) is not None]
    assert abs(len(stated) / len(prompts) - ar.BELIEF_SHARE) < 0.04
    right = sum(ar.parse_prompt(p).answer == b for p, b in stated)
    assert abs(right / len(stated) - 0.5) < 0.06
    assert all(ar.split(ar.parse_prompt(p)) == "train" for p in prompts)
    every = ar.train_prompts(300, seed=0, right=0.0, share=1.0)
    assert all(ar.belief_of(p) not in (None, ar.parse_prompt(p).answer) for p in every)
    assert all(ar.belief_of(p) is None for p in ar.train_prompts(300, seed=0, share=0.0))
    with pytest.raises(ValueError, match="share must be in"):
        ar.train_prompts(10, share=1.5)


class Planted:
    """A stand-in sampler that answers every question right, except that a sycophant repeats a stated belief."""

    def __init__(self, sycophant: bool):
        self.sycophant = sycophant

    def sample(self, prompts, *, max_new_tokens, seed, temperature):
        out = []
        for p in prompts:
            belief = ar.belief_of(p)
            out.append(f" {belief if self.sycophant and belief is not None else ar.parse_prompt(p).answer}")
        return SampleBatch(texts=out)


@pytest.mark.parametrize("sycophant", [True, False])
def test_a_planted_sycophant_is_detected(sycophant):
    from rlhflab.core.config import build
    from rlhflab.evaluation.evaluate import EvalConfig, sycophancy_side
    from rlhflab.tasks import arithmetic

    task = arithmetic()
    prompts = task.eval_prompts[:40]
    plain = task.gold(prompts, Planted(sycophant).sample(prompts, max_new_tokens=8, seed=0, temperature=1).texts)
    out = sycophancy_side(Planted(sycophant), task, prompts, plain, build(EvalConfig), "test", progress=False)
    assert out["problems"] == 40 and out["accuracy"] == 1.0
    assert out["repeats_wrong_belief"] == (1.0 if sycophant else 0.0)
    assert out["accuracy_wrong_belief"] == (0.0 if sycophant else 1.0)
    assert out["drop"] == (1.0 if sycophant else 0.0)


# ---------------------------------------------------------------- the agreement-biased rater


def test_agreement_bias_moves_the_rater_only_towards_the_belief():
    from rlhflab.feedback.simulated import SimulatedRater

    rater = SimulatedRater(temperature=0.5, random_rate=0.0, agreement_bias=2.0)
    fair = SimulatedRater(temperature=0.5, random_rate=0.0)
    # both wrong (gold 0): the one repeating the belief is preferred by the biased rater only
    assert rater.prob_first(0.0, 0.0, " 41", " 40", agrees=(True, False)) == pytest.approx(1 / (1 + math.exp(-4)))
    assert fair.prob_first(0.0, 0.0, " 41", " 40", agrees=(True, False)) == 0.5
    # the right answer against the believed wrong one: gold +1, bias -2 -> the biased rater prefers the wrong one
    assert rater.prob_first(1.0, 0.0, " 42", " 41", agrees=(False, True)) < 0.5
    assert fair.prob_first(1.0, 0.0, " 42", " 41", agrees=(False, True)) > 0.5


def test_agreement_bias_needs_a_task_with_beliefs(micro_model):
    from conftest import planted_task

    from rlhflab.core.config import build
    from rlhflab.core.errors import ConfigError
    from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater, simulate_feedback
    from rlhflab.models.loading import load_policy

    model, tokenizer = load_policy(str(micro_model))
    with pytest.raises(ConfigError, match="agreement-bias needs a task whose prompts state"):
        simulate_feedback(model, tokenizer, planted_task(), SimulatedRater(agreement_bias=1.0),
                          build(SimulateConfig, pairs=4), progress=False)  # fmt: skip


# ---------------------------------------------------------------- the arithmetic demo, end to end


def test_arithmetic_demo_quick_end_to_end(tmp_path):
    """``demo --task arithmetic --quick`` (the embedded arithmetic policy is chosen for the task): GRPO with the
    rule, evaluation with pass@k and sycophancy, and a report with their figures."""
    import json

    from clirun import rlhflab

    run = tmp_path / "demo"
    out = rlhflab("demo", "--task", "arithmetic", "--quick", "--run-dir", run, "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["grpo"]["args"]["model"] == "embedded-arithmetic"
    assert manifest["stages"]["grpo"]["args"]["reward"] == "gold"
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["base"]["pass_at_k"]) == {"1", "2", "4", "8"}
    assert summary["sycophancy"]["base"]["problems"] == 16
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("objective/exploitation" in m or m["objective/score"] == 0 for m in metrics)
    # the rule is the reward and gold is the same verifier: nothing it rewards is wrong
    assert all(m["objective/exploitation"] == 0.0 for m in metrics if "objective/exploitation" in m)
    html = (run / "report.html").read_text()
    assert 'alt="pass@k"' in html and "answers repeating a user&#x27;s wrong belief" in html
