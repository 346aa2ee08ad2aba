"""rlhflab's decoding loop samples exactly what the model defines: greedy tokens as ``generate``'s, token
frequencies as the model's distribution after temperature, top-k and top-p (as transformers' own processors
compute it), and log-probabilities that a teacher-forced pass reproduces. On a micro GPT-2 and a micro
Llama-shaped model (grouped-query attention, rotary positions: SmolLM2's architecture)."""

import pytest
import torch

from rlhflab.models.decode import allowed_logits, decode
from rlhflab.models.loading import load_policy, load_tokenizer
from rlhflab.models.sampling import encode_prompts, token_logprobs

PROMPTS = ["the cat", "a good day is", "bad", "the weather was very good and the"]


@pytest.fixture(scope="module")
def llama_model(micro_model, tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(micro_model)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # peaked enough that greedy decoding has clear winners
    dest = tmp_path_factory.mktemp("llama") / "m"
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


@pytest.fixture(params=["gpt2", "llama"])
def model_and_tokenizer(request, micro_model, llama_model):
    model, tokenizer = load_policy(micro_model if request.param == "gpt2" else llama_model)
    return model.eval(), tokenizer


def test_greedy_decoding_is_generates(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    enc = encode_prompts(tokenizer, PROMPTS, "cpu")
    ours = decode(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=12, generator=None,
                  stop_ids=[tokenizer.eos_token_id], pad_id=tokenizer.pad_token_id, greedy=True)  # fmt: skip
    theirs = model.generate(**enc, do_sample=False, max_new_tokens=12, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id)[:, enc["input_ids"].shape[1]:]  # fmt: skip
    for row, mask, ref in zip(ours.tokens, ours.mask, theirs):
        n = int(mask.sum())
        assert row[:n].tolist() == ref[:n].tolist()
        assert (row[n:] == tokenizer.pad_token_id).all()


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.3, 8, 0.9)])
def test_log_probabilities_are_a_teacher_forced_pass(model_and_tokenizer, temperature, top_k, top_p):
    model, tokenizer = model_and_tokenizer
    enc = encode_prompts(tokenizer, PROMPTS, "cpu")
    out = decode(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=10,
                 generator=torch.Generator().manual_seed(1), stop_ids=[tokenizer.eos_token_id],
                 pad_id=tokenizer.pad_token_id, samples_per_prompt=3, temperature=temperature, top_k=top_k,
                 top_p=top_p)  # fmt: skip
    assert out.tokens.shape == (12, 10)
    ids = torch.cat([enc["input_ids"].repeat_interleave(3, 0), out.tokens], 1)
    attention = torch.cat([enc["attention_mask"].repeat_interleave(3, 0), out.mask], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention,
                       position_ids=(attention.cumsum(-1) - 1).clamp(min=0)).logits  # fmt: skip
    p = enc["input_ids"].shape[1]
    allowed = allowed_logits(logits[:, p - 1 : -1], temperature, top_k, top_p)
    forced = torch.log_softmax(allowed, -1).gather(2, out.tokens[:, :, None]).squeeze(-1)
    forced = torch.where(out.mask == 1, forced, 0.0)  # (a pad token may be outside the allowed set: -inf)
    assert torch.allclose(out.logprobs, forced, atol=1e-4)
    if top_k == 0 and top_p == 1.0:  # the full distribution: rlhflab's own log-probability pass agrees too
        full, _ = token_logprobs(model, ids, attention, p, temperature=temperature)
        assert torch.allclose(out.logprobs, full * out.mask, atol=1e-4)
    assert (out.logprobs[out.mask == 0] == 0).all() and (out.logprobs[out.mask == 1] <= 0).all()


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.8, 6, 1.0), (1.0, 0, 0.7)])
def test_token_frequencies_are_the_models_distribution(micro_model, temperature, top_k, top_p):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    model, tokenizer = load_policy(micro_model)
    enc = encode_prompts(tokenizer, ["the weather was"], "cpu")
    with torch.no_grad():
        logits = model(**enc).logits[:, -1]
    warped = TemperatureLogitsWarper(temperature)(enc["input_ids"], logits.clone())
    if top_k:
        warped = TopKLogitsWarper(top_k)(enc["input_ids"], warped)
    if top_p < 1:
        warped = TopPLogitsWarper(top_p)(enc["input_ids"], warped)
    expected = torch.softmax(warped, -1)[0]  # transformers' own processors: the distribution generate draws from
    n = 6000
    out = decode(model.eval(), enc["input_ids"], enc["attention_mask"], max_new_tokens=2,
                 generator=torch.Generator().manual_seed(0), stop_ids=[], pad_id=tokenizer.pad_token_id,
                 samples_per_prompt=n, temperature=temperature, top_k=top_k, top_p=top_p)  # fmt: skip
    seen = torch.bincount(out.tokens[:, 0], minlength=len(expected)).float() / n
    assert (seen[expected == 0] == 0).all()  # nothing outside the allowed set
    tv = 0.5 * (seen - expected).abs().sum()
    assert tv < 0.05, f"total variation {tv:.3f} between sampled and model frequencies"
    # the second token is drawn from the model given the first (the shared prompt cache is right for each row)
    first = int(expected.argmax())
    rows = out.tokens[:, 0] == first
    with torch.no_grad():
        ids = torch.cat([enc["input_ids"], torch.tensor([[first]])], 1)
        nxt = model(input_ids=ids).logits[:, -1]
    expected2 = torch.softmax(allowed_logits(nxt, temperature, top_k, top_p), -1)[0]
    seen2 = torch.bincount(out.tokens[rows, 1], minlength=len(expected2)).float() / rows.sum()
    assert 0.5 * (seen2 - expected2).abs().sum() < 0.1


def test_stops_and_seeds(micro_model):
    model, tokenizer = load_policy(micro_model)
    enc = encode_prompts(tokenizer, PROMPTS, "cpu")

    def run(seed):
        return decode(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=8,
                      generator=torch.Generator().manual_seed(seed), stop_ids=[tokenizer.eos_token_id],
                      pad_id=tokenizer.pad_token_id, samples_per_prompt=4)  # fmt: skip

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)
    state = torch.random.get_rng_state()
    run(2)
    assert torch.equal(state, torch.random.get_rng_state())  # the global random state is untouched
    ended = (a.tokens == tokenizer.eos_token_id) & (a.mask == 1)
    assert (ended.sum(1) <= 1).all()  # a row stops at its first stop token
    last = a.mask.sum(1) - 1
    assert ((a.tokens.gather(1, last[:, None]).squeeze(1) == tokenizer.eos_token_id) | (a.mask.sum(1) == 8)).all()
    with pytest.raises(ValueError, match="temperature must be positive"):
        decode(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=2, generator=None, stop_ids=[],
               pad_id=0, temperature=0.0)  # fmt: skip
