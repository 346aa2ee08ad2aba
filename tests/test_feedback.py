"""The simulated rater's probabilities, biases and the feedback it produces."""

import math

import pytest
import torch

from rlhflab.core.config import build
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater, simulate_feedback
from rlhflab.models.batching import prompt_stream
from rlhflab.models.loading import load_policy


def test_bradley_terry_probability_with_noise():
    rater = SimulatedRater(temperature=0.5, random_rate=0.2)
    p = rater.prob_first(1.0, 0.5, "a", "b")
    assert p == pytest.approx(0.2 * 0.5 + 0.8 / (1 + math.exp(-1.0)))
    assert rater.prob_first(0.5, 1.0, "a", "b") == pytest.approx(1 - p)
    assert SimulatedRater(random_rate=1.0).prob_first(1.0, -1.0, "a", "b") == 0.5


def test_deterministic_rater_and_ties():
    rater = SimulatedRater(temperature=0.0, random_rate=0.0)
    assert rater.prob_first(0.2, 0.1, "a", "b") == 1.0
    assert rater.prob_first(0.1, 0.2, "a", "b") == 0.0
    g = torch.Generator().manual_seed(0)
    pair = rater.compare("p", " x", " y", 0.1, 0.1, g)
    assert pair.label == 0.5
    pair = rater.compare("p", " x", " y", 0.1, 0.3, g)
    assert (pair.chosen, pair.rejected, pair.label) == (" y", " x", 1.0)
    assert pair.scores == {"gold_chosen": 0.3, "gold_rejected": 0.1, "p_chosen": 1.0}
    assert pair.source == "simulated:bt"


def test_systematic_biases_change_what_the_rater_perceives():
    longer = SimulatedRater(temperature=0.0, random_rate=0.0, length_bias=0.1)
    # gold says b (0.1 better), but a is 3 words longer: +0.3 perceived
    assert longer.prob_first(0.0, 0.1, "one two three four", "one") == 1.0
    keyword = SimulatedRater(temperature=0.0, random_rate=0.0, keyword="wedding", keyword_bias=1.0)
    assert keyword.prob_first(0.0, 0.5, "a wedding party", "a fine day") == 1.0
    with pytest.raises(ValueError, match="--rater-keyword must be a word"):
        SimulatedRater(keyword_bias=1.0)


def test_irrational_rater_mistakes_ties_and_skips():
    # B-Pref's options on a text rater: a mistake flips the intended answer, near-equal scores are a stated tie, and
    # a comparison of two bad continuations is skipped
    sloppy = SimulatedRater(temperature=0.0, random_rate=0.0, mistake=0.25)
    assert sloppy.prob_first(1.0, 0.0, "a", "b") == 0.75 and sloppy.prob_first(0.0, 1.0, "a", "b") == 0.25
    assert SimulatedRater(temperature=0.0, random_rate=0.2, mistake=0.25).prob_first(
        1.0, 0.0, "a", "b"
    ) == pytest.approx(0.7)
    g = torch.Generator().manual_seed(0)
    picky = SimulatedRater(temperature=1.0, random_rate=0.0, equal_within=0.2, skip_below=-0.5)
    tie = picky.compare("p", "x", "y", 0.3, 0.2, g)
    assert tie.label == 0.5 and tie.scores["p_chosen"] == 0.5
    assert picky.compare("p", "x", "y", -0.6, -0.9, g) is None  # both below -0.5: skipped
    assert picky.compare("p", "x", "y", -0.4, -0.9, g).label == 1.0  # one is worth judging
    flips = SimulatedRater(temperature=0.0, random_rate=0.0, mistake=0.25)
    wrong = sum(flips.compare("p", "a", "b", 1.0, 0.0, g).chosen == "b" for _ in range(4000))
    assert wrong / 4000 == pytest.approx(0.25, abs=0.03)
    with pytest.raises(ValueError, match="--rater-mistake must be in"):
        SimulatedRater(mistake=1.5)


def test_sampled_labels_follow_the_probability():
    rater = SimulatedRater(temperature=1.0, random_rate=0.0)
    g = torch.Generator().manual_seed(0)
    wins = sum(rater.compare("p", "a", "b", 1.0, 0.0, g).chosen == "a" for _ in range(4000))
    assert wins / 4000 == pytest.approx(1 / (1 + math.exp(-1)), abs=0.03)


def test_prompt_stream_covers_the_prompts_before_repeating():
    g = torch.Generator().manual_seed(0)
    stream = prompt_stream(["a", "b", "c"], 7, g)
    assert len(stream) == 7 and sorted(stream[:3]) == ["a", "b", "c"] and sorted(stream[3:6]) == ["a", "b", "c"]


def test_simulate_feedback_on_a_micro_model(micro_model, task):
    model, tokenizer = load_policy(micro_model)
    rater = SimulatedRater(temperature=0.0, random_rate=0.0)
    config = build(SimulateConfig, pairs=40, max_new_tokens=8, batch_size=16, seed=0)
    pairs, stats = simulate_feedback(model, tokenizer, task, rater, config, progress=False)
    assert len(pairs) + stats["dropped_identical"] + stats["dropped_empty"] == 40
    assert all(p.prompt in task.train_prompts and p.chosen != p.rejected for p in pairs)
    assert all(p.chosen.strip() and p.rejected.strip() for p in pairs)
    # a noiseless rater always picks the continuation with the higher gold score
    strict = [p for p in pairs if p.label == 1.0]
    assert all(p.scores["gold_chosen"] > p.scores["gold_rejected"] for p in strict)
    assert stats["agreement_with_gold"] == 1.0
    again, _ = simulate_feedback(model, tokenizer, task, rater, config, progress=False)
    assert again == pairs  # one seed, the same pairs


def test_empty_continuations_are_dropped_not_written(micro_model, task, monkeypatch, tmp_path):
    """A continuation the model ends at once is not a comparison; the written file stays readable."""
    import rlhflab.feedback.simulated as feedback
    from rlhflab.core.comparison import read_pairs, write_pairs

    real = feedback.sample

    def sometimes_empty(*args, **kwargs):
        rollout = real(*args, **kwargs)
        rollout.responses[0] = ""
        return rollout

    monkeypatch.setattr(feedback, "sample", sometimes_empty)
    model, tokenizer = load_policy(micro_model)
    config = build(SimulateConfig, pairs=32, max_new_tokens=6, batch_size=16, seed=0)
    pairs, stats = simulate_feedback(model, tokenizer, task, SimulatedRater(), config, progress=False)
    assert stats["dropped_empty"] == 2  # the first prompt of each of the two batches
    write_pairs(tmp_path / "pairs.jsonl", pairs)
    assert len(read_pairs(tmp_path / "pairs.jsonl")) == len(pairs)
