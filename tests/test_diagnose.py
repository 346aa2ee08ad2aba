"""The model-based diagnostics against independent computations and their limits."""

import pytest
import torch
from conftest import good_minus_bad, synthetic_sentences

from rlhflab.core.comparison import PreferencePair
from rlhflab.core.config import build
from rlhflab.evaluation.diagnose import DiagnoseConfig, calibration, next_token_predictions, remisalignment_cost
from rlhflab.models.loading import load_policy


def test_calibration_nll_matches_the_library_loss(micro_model):
    model, tokenizer = load_policy(micro_model)
    model.eval()
    text = synthetic_sentences(1, seed=3)[0]
    conf, correct, loglik = next_token_predictions(model, tokenizer, [text])
    ids = torch.tensor([tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]])
    with torch.no_grad():
        expected = model(input_ids=ids, labels=ids).loss  # mean cross-entropy of the next tokens
    assert float(-loglik.mean()) == pytest.approx(float(expected), abs=1e-5)
    assert conf.numel() == ids.shape[1] - 1 and ((conf > 0) & (conf <= 1)).all()
    result = calibration(model, tokenizer, synthetic_sentences(20, seed=4), bins=10)
    assert 0 <= result["ece"] <= 1 and sum(b["count"] for b in result["bins"]) == result["tokens"]


def test_remisalignment_stops_when_undone_and_reports_when_not(micro_model):
    pairs = [PreferencePair("the cat", " bad bad day.", " good good day.")] * 4
    prompts = ["the dog", "a cat sat"]
    config = build(DiagnoseConfig, remisalign_steps=4, remisalign_every=2, remisalign_batch_size=2, max_new_tokens=6)
    done = remisalignment_cost(str(micro_model), 10.0, pairs, prompts, good_minus_bad, config)
    assert done["steps"] == 0 and len(done["curve"]) == 1  # gold (at most 1) is already below the target
    never = remisalignment_cost(str(micro_model), -10.0, pairs, prompts, good_minus_bad, config)
    assert never["steps"] is None and [c["step"] for c in never["curve"]] == [0, 2, 4]
