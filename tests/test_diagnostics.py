"""Each diagnostic against hand-built inputs with known answers."""

import math
import random

import numpy as np
import pytest
import torch

from rlhflab.evaluation.diagnostics import (
    attractor,
    distinct_n,
    embedding_spread,
    expected_calibration_error,
    exploitation,
    gao_fit,
    gold_peak,
    phrase_growth,
    reliability_bins,
    self_bleu,
    top_phrase,
)

# ---------------------------------------------------------------- diversity


def test_distinct_n_minimal_for_identical_samples():
    texts = ["a b c"] * 10
    assert distinct_n(texts, 1) == pytest.approx(3 / 30)
    assert distinct_n(texts, 2) == pytest.approx(2 / 20)
    assert distinct_n(["a b", "c d"], 1) == 1.0 and distinct_n(["a"], 2) == 0.0


def test_self_bleu_hand_values():
    assert self_bleu(["the cat sat on the mat"] * 3) == pytest.approx(1.0)
    # "a b" vs "a c" (max_n=2): p1 = 1/2, p2 = epsilon/1 = 0.1, equal lengths: sqrt(0.05) for both
    assert self_bleu(["a b", "a c"], max_n=2) == pytest.approx(math.sqrt(0.05))
    # clipping and brevity penalty: "the the the" clips to 1/3 (longer than its reference: no penalty);
    # "the cat" has p1 = 1/2 and is shorter than its reference of 3 words: BP = exp(1 - 3/2)
    assert self_bleu(["the the the", "the cat"], max_n=1) == pytest.approx((1 / 3 + 0.5 * math.exp(-0.5)) / 2)


def test_self_bleu_falls_as_samples_diversify():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(200)]
    collapsed = ["a great day and a great time"] * 30 + [" ".join(rng.choices(vocab, k=7)) for _ in range(10)]
    diverse = [" ".join(rng.choices(vocab, k=7)) for _ in range(40)]
    assert self_bleu(collapsed) > 0.7 > 0.1 > self_bleu(diverse)


# ---------------------------------------------------------------- attractors


def test_planted_attractor_is_found():
    rng = random.Random(1)
    vocab = ["the", "man", "walked", "to", "a", "house", "and", "saw", "river", "dog", "sky", "old", "road", "ran"]
    base = [" ".join(rng.choices(vocab, k=10)) for _ in range(200)]
    policy = [
        " ".join(rng.choices(vocab, k=6)) + (" at a lovely wedding party" if i % 10 < 7 else "") for i in range(200)
    ]
    found = attractor(policy, base, n=3)
    assert found["phrase"] in ("a lovely wedding", "lovely wedding party", "at a lovely")
    assert found["share"] == pytest.approx(0.7) and found["share_in_base"] == 0.0
    grown = [row["phrase"] for row in phrase_growth(policy, base, n=2, k=4)]
    assert "wedding party" in grown and "lovely wedding" in grown
    assert top_phrase([], 2) == ("", 0.0)


# ---------------------------------------------------------------- over-optimisation


@pytest.mark.parametrize("form, alpha, beta, d_star", [("bon", 1.0, 0.2, 2.5), ("rl", 1.0, 0.4, math.exp(1.5))])
def test_gao_fit_recovers_alpha_and_beta(form, alpha, beta, d_star):
    rng = np.random.default_rng(0)
    d = np.linspace(0.05, 8, 60)
    truth = d * (alpha - beta * (d if form == "bon" else np.log(d)))
    fit = gao_fit(d, truth + rng.normal(0, 0.02, size=d.shape), form)
    assert fit.alpha == pytest.approx(alpha, abs=0.03) and fit.beta == pytest.approx(beta, abs=0.02)
    assert fit.d_star == pytest.approx(d_star, rel=0.05) and fit.r2 > 0.99
    assert np.allclose(fit.predict(d), truth, atol=0.05)


def test_gao_fit_without_a_turn_has_no_peak():
    d = np.linspace(0, 3, 20)
    fit = gao_fit(d, 0.5 * d, "bon")
    assert fit.d_star == math.inf and fit.r2 == pytest.approx(1.0)
    with pytest.raises(ValueError):
        gao_fit([1.0], [0.1], "bon")


def test_gold_peak_marks_goodhart():
    d = np.linspace(0, 6, 40)
    gold = d * (1 - 0.25 * d)  # peaks at d = 2, then falls below zero
    proxy = d  # keeps rising
    peak = gold_peak(gold, proxy, d, window=1)
    assert peak["d"] == pytest.approx(2.0, abs=0.2) and peak["goodhart"]
    assert peak["gold_drop"] > 0 and peak["proxy_rise_after_peak"] > 0
    assert not gold_peak(d, d, d, window=1)["goodhart"]  # gold still at its best at the end


# ---------------------------------------------------------------- calibration


def test_ece_of_a_perfectly_calibrated_predictor_is_near_zero():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 200_000)
    correct = rng.uniform(0, 1, conf.shape) < conf
    assert expected_calibration_error(conf, correct) < 0.01


def test_ece_and_bins_hand_values():
    assert expected_calibration_error([0.9] * 10, [True] * 6 + [False] * 4) == pytest.approx(0.3)
    bins = reliability_bins([0.05, 0.95, 1.0], [False, True, True], n_bins=10)
    assert [b["count"] for b in bins] == [1] + [0] * 8 + [2]
    assert bins[9]["accuracy"] == 1.0 and bins[9]["confidence"] == pytest.approx(0.975)
    assert math.isnan(bins[4]["accuracy"])


# ---------------------------------------------------------------- exploitation and embeddings


def test_exploitation_reports_the_biased_feature():
    rater = {"length_bias": 0.05, "keyword": "wedding", "keyword_bias": 1.0}
    rows = exploitation(rater, ["a b c", "a b c"], ["a b c d e f", "a wedding b c d e"], 0.1, 0.15)
    assert rows[0] == {
        "feature": "length",
        "base": 3.0,
        "policy": 6.0,
        "change": 3.0,
        "gold_change": pytest.approx(0.05),
    }
    assert rows[1]["feature"] == "keyword 'wedding'" and rows[1]["change"] == 0.5
    assert exploitation({"length_bias": 0.0}, ["a"], ["b"], 0, 0) == []


def test_embedding_spread_hand_values():
    assert embedding_spread(torch.ones(5, 3)) == pytest.approx(0.0, abs=1e-12)
    assert embedding_spread(torch.eye(4)) == pytest.approx(1.0)
    assert embedding_spread(torch.tensor([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(2.0)


def test_embedding_spread_with_the_packaged_model():
    from rlhflab.models.embeddings import embed, embedding_model_dir

    if embedding_model_dir() is None:
        pytest.skip("the optional embedding model is not installed")
    e = embed(["a lovely wedding party", "a lovely wedding party", "the stock market fell", "quantum cats"])
    assert e.shape == (4, 384) and torch.allclose(e.norm(dim=1), torch.ones(4), atol=1e-5)
    assert embedding_spread(e[:2]) == pytest.approx(0.0, abs=1e-6) and embedding_spread(e) > 0.5


def test_length_share_of_gain_hand_values():
    from rlhflab.evaluation.diagnostics.exploitation import length_share_of_gain

    # reward = 0.1 per word exactly: the whole gain is length
    out = length_share_of_gain([2, 4], [0.2, 0.4], [6, 8], [0.6, 0.8])
    assert out["slope"] == pytest.approx(0.1) and out["words_change"] == pytest.approx(4.0)
    assert out["reward_change"] == pytest.approx(0.4) and out["share"] == pytest.approx(1.0)
    # same lengths, higher reward: none of it is length
    flat = length_share_of_gain([3, 5], [0.0, 0.0], [3, 5], [1.0, 1.0])
    assert flat["words_change"] == 0 and flat["share"] == pytest.approx(0.0)
    assert length_share_of_gain([3, 5], [0.5, 0.5], [3, 5], [0.5, 0.5])["share"] is None  # no gain to explain
    with pytest.raises(ValueError):
        length_share_of_gain([1], [0.1, 0.2], [1], [0.1])
