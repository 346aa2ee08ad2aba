"""Loading, sampling and log-probabilities of policies; scalar-head models."""

import pytest
import torch
from conftest import without_pad_token

from rlhflab.core.errors import ConfigError, RlhflabError
from rlhflab.core.estimators import kl_estimators
from rlhflab.models.loading import (
    ScalarHeadModel,
    check_fits,
    last_token_values,
    load_policy,
    load_scalar_model,
    load_tokenizer,
    position_ids,
)
from rlhflab.models.sampling import response_mask_from_ids, sample, token_logprobs


@pytest.fixture(scope="module")
def policy(micro_model):
    model, tokenizer = load_policy(micro_model)
    return model.eval(), tokenizer


def test_response_mask_counts_up_to_and_including_the_first_eos():
    ids = torch.tensor([[5, 6, 0, 7, 0], [5, 5, 5, 5, 5], [0, 1, 1, 1, 1]])
    assert response_mask_from_ids(ids, 0).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert response_mask_from_ids(ids, None).tolist() == [[1] * 5] * 3


def test_position_ids_ignore_left_padding():
    assert position_ids(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_sampling_is_reproducible_and_leaves_global_rng_alone(policy):
    model, tokenizer = policy
    prompts = ["the cat", "a big red dog sat"]
    state = torch.get_rng_state()
    a = sample(model, tokenizer, prompts, max_new_tokens=8, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = sample(model, tokenizer, prompts, max_new_tokens=8, seed=3)
    c = sample(model, tokenizer, prompts, max_new_tokens=8, seed=4)
    assert a.responses == b.responses and torch.equal(a.input_ids, b.input_ids)
    assert a.responses != c.responses
    assert a.response_ids.shape == (2, 8) and a.response_mask.shape == (2, 8)
    # text is the decoded ids up to the end token; padding after it carries the pad id
    for ids, m, text in zip(a.response_ids, a.response_mask, a.responses):
        n = int(m.sum())
        assert tokenizer.decode(ids[:n], skip_special_tokens=True) == text
        assert (ids[n:] == tokenizer.pad_token_id).all()


def test_logprobs_do_not_depend_on_left_padding(policy):
    model, tokenizer = policy
    r = sample(model, tokenizer, ["the cat", "a big red dog sat on"], max_new_tokens=6, seed=0)
    logp, entropy = token_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length, with_entropy=True)
    # the short prompt alone, without padding, gives the same log-probabilities
    pad = int((r.attention_mask[0, : r.prompt_length] == 0).sum())
    alone = r.input_ids[:1, pad:]
    logp_alone, _ = token_logprobs(model, alone, r.attention_mask[:1, pad:], r.prompt_length - pad)
    m = r.response_mask[0].bool()
    assert torch.allclose(logp[0][m], logp_alone[0][m], atol=1e-5)
    assert (entropy >= 0).all() and (logp <= 0).all()


def test_logprobs_match_the_sampling_distribution(policy):
    """The first response token's log-probability equals log softmax of the next-token logits."""
    model, tokenizer = policy
    r = sample(model, tokenizer, ["the dog"], max_new_tokens=3, seed=1)
    logp, _ = token_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length)
    with torch.no_grad():
        logits = model(input_ids=r.input_ids[:, : r.prompt_length]).logits[0, -1]
    expected = torch.log_softmax(logits, -1)[r.response_ids[0, 0]]
    assert logp[0, 0].item() == pytest.approx(expected.item(), abs=1e-5)


def test_kl_is_exactly_zero_when_policy_equals_reference(micro_model, policy):
    model, tokenizer = policy
    reference, _ = load_policy(micro_model)
    r = sample(model, tokenizer, ["the cat", "it ran"], max_new_tokens=8, seed=2)
    logp, _ = token_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length)
    logp_ref, _ = token_logprobs(reference.eval(), r.input_ids, r.attention_mask, r.prompt_length)
    for value in kl_estimators(logp, logp_ref, r.response_mask).values():
        assert torch.equal(value, torch.zeros(2))


def test_check_fits_names_the_longest_prompt(policy):
    model, tokenizer = policy
    with pytest.raises(ConfigError, match=r"prompt 2 \(\d+ tokens: 'the the .*exceeds the model's context of 64"):
        check_fits(model, tokenizer, ["the cat", "the " * 60], max_new_tokens=8)
    with pytest.raises(ConfigError, match="prompt set is empty"):
        check_fits(model, tokenizer, [], max_new_tokens=8)
    check_fits(model, tokenizer, ["the cat"], max_new_tokens=8)


def test_load_errors_are_one_clear_line(tmp_path, micro_model):
    with pytest.raises(RlhflabError, match="no such directory"):
        load_policy(tmp_path / "nowhere" / "model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RlhflabError, match="has no config.json"):
        load_policy(tmp_path / "empty")


def test_tokenizer_without_pad_token(tmp_path, micro_model):
    copy = without_pad_token(micro_model, tmp_path / "nopad")
    with pytest.raises(RlhflabError, match="has no pad token; pass --pad-token"):
        load_tokenizer(copy)
    tokenizer = load_tokenizer(copy, pad_token="<|endoftext|>")
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.padding_side == "left"
    with pytest.raises(ConfigError, match="is not a token of the tokenizer"):
        load_tokenizer(copy, pad_token="<never-seen>")


def test_scalar_head_reads_the_last_token_whatever_the_padding(micro_model):
    tokenizer = load_tokenizer(micro_model)
    model = load_scalar_model(micro_model, tokenizer.pad_token_id).eval()
    assert isinstance(model, ScalarHeadModel)
    enc = tokenizer(["the cat sat", "a dog ran on the mat"], return_tensors="pt", padding=True)
    with torch.no_grad():
        values = model(enc["input_ids"], enc["attention_mask"], position_ids(enc["attention_mask"]))
        batched = last_token_values(values, enc["attention_mask"])
        single = tokenizer(["the cat sat"], return_tensors="pt")
        alone = last_token_values(model(single["input_ids"], single["attention_mask"]), single["attention_mask"])
    assert values.shape == enc["input_ids"].shape
    assert batched[0].item() == pytest.approx(alone[0].item(), abs=1e-5)
