"""Chat templates and the prompt/completion boundary (issue 11): completions are scored exactly as they were
generated, whatever the tokenizer adds or merges; prompts reach a chat model through its template."""

import json
import shutil

import pytest
import torch
from conftest import planted_task

from rlhflab.core.config import build
from rlhflab.core.errors import ConfigError
from rlhflab.models.batching import appended_count, collate, encode, generated_ids
from rlhflab.models.chat import configure, end_of_turn, messages_of, render, stop_ids
from rlhflab.models.loading import load_policy, load_tokenizer
from rlhflab.models.sampling import (
    completion_logprobs,
    encode_prompts,
    response_mask_from_ids,
    sample,
    token_logprobs,
)
from rlhflab.pipeline import stages
from rlhflab.pipeline.setup import Setup
from rlhflab.run.rundir import RunDir

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def with_post_processor(model_dir, dest, single: str):
    """A copy of the micro model whose tokenizer adds special tokens around every text (``single`` in the
    tokenizers TemplateProcessing form, e.g. "<|endoftext|> $A" for BOS, "$A <|endoftext|>" for EOS)."""
    from tokenizers import Tokenizer, processors

    shutil.copytree(model_dir, dest)
    tok = Tokenizer.from_file(str(dest / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=[("<|endoftext|>", eos)])
    tok.save(str(dest / "tokenizer.json"))
    return dest


@pytest.fixture(scope="module")
def bos_model(micro_model, tmp_path_factory):
    return with_post_processor(micro_model, tmp_path_factory.mktemp("bos") / "m", "<|endoftext|> $A")


@pytest.fixture(scope="module")
def eos_model(micro_model, tmp_path_factory):
    return with_post_processor(micro_model, tmp_path_factory.mktemp("eos") / "m", "$A <|endoftext|>")


@pytest.fixture(scope="module")
def chat_model(micro_model, tmp_path_factory):
    """The micro model with ChatML turn tokens and a chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = tmp_path_factory.mktemp("chat") / "m"
    tokenizer = AutoTokenizer.from_pretrained(micro_model)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    model = AutoModelForCausalLM.from_pretrained(micro_model)
    torch.manual_seed(0)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


# ---------------------------------------------------------------- the boundary


def test_the_tokenizers_under_test_do_what_they_are_built_to(micro_model, bos_model, eos_model):
    assert appended_count(load_tokenizer(micro_model)) == 0
    bos, eos = load_tokenizer(bos_model), load_tokenizer(eos_model)
    assert bos("the cat")["input_ids"][0] == bos.bos_token_id and appended_count(bos) == 0
    assert eos("the cat")["input_ids"][-1] == eos.eos_token_id and appended_count(eos) == 1


def test_prompts_are_encoded_for_generation_without_an_appended_eos(eos_model, bos_model):
    eos = load_tokenizer(eos_model)
    enc = encode_prompts(eos, ["the cat", "a big red dog"], "cpu")
    assert (enc["input_ids"][:, -1] != eos.eos_token_id).all()  # the model is not told the text is over
    assert enc["input_ids"][0].tolist()[-2:] == eos("the cat", add_special_tokens=False)["input_ids"][-2:]
    bos = load_tokenizer(bos_model)
    enc = encode_prompts(bos, ["the cat"], "cpu")
    assert enc["input_ids"][0, 0] == bos.bos_token_id  # what the tokenizer puts in front stays


@pytest.mark.parametrize("which", ["plain", "bos", "eos"])
def test_encode_as_generated_finds_the_completion_and_ends_only_where_the_sample_ended(
    which, micro_model, bos_model, eos_model
):
    tokenizer = load_tokenizer({"plain": micro_model, "bos": bos_model, "eos": eos_model}[which])
    words = tokenizer("good day.", add_special_tokens=False)["input_ids"]
    # a prompt ending in a space: the completion's first word is not lost to the prompt
    [(ids, start)] = encode(tokenizer, ["the cat "], ["good day."], 64, as_generated=True)
    assert tokenizer.decode(ids[start:]).strip() == "good day."
    assert ids[-1] != tokenizer.eos_token_id  # not ended: no end token, even from an EOS-appending tokenizer
    [(ids, start)] = encode(tokenizer, ["the cat"], [" good day."], 64, [True], as_generated=True)
    assert ids[start:-1] == tokenizer(" good day.", add_special_tokens=False)["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1 + (which == "bos")
    assert words  # the test's text tokenises


def test_fine_tuning_targets_are_the_generated_tokens_exactly(micro_model, task):
    policy, tokenizer = load_policy(micro_model)
    policy.eval()
    prompts = [p + " " for p in task.train_prompts[:6]]  # trailing spaces: where re-tokenising would differ
    r = sample(policy, tokenizer, prompts, max_new_tokens=8, seed=3)
    encoded = generated_ids(r, range(len(prompts)), 64)
    for i, (ids, start) in enumerate(encoded):
        assert ids[start:] == r.response_ids[i][r.response_mask[i].bool()].tolist()
    # and so their log-probabilities are the sampler's own
    ids, attn, comp = collate(encoded, tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        ours = completion_logprobs(policy, ids, attn, comp).sum(1)
        sampled, _ = token_logprobs(policy, r.input_ids, r.attention_mask, r.prompt_length)
    torch.testing.assert_close(ours, (sampled * r.response_mask).sum(1), atol=1e-4, rtol=1e-4)


def test_the_response_mask_stops_at_any_stop_token():
    response = torch.tensor([[5, 9, 7, 3], [5, 6, 2, 9], [1, 1, 1, 1]])
    assert response_mask_from_ids(response, [9, 2]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    assert response_mask_from_ids(response, 7).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]]


# ---------------------------------------------------------------- chat templates


def test_a_chat_template_renders_prompts_and_names_its_end_of_turn(chat_model, micro_model):
    tokenizer = configure(load_tokenizer(chat_model), "auto")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn(tokenizer) == end and stop_ids(tokenizer) == [end, tokenizer.eos_token_id]
    assert render(tokenizer, ["the cat"]) == ["<|im_start|>user\nthe cat<|im_end|>\n<|im_start|>assistant\n"]
    hh = "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: and the cat?\n\nAssistant:"
    assert messages_of(hh) == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and the cat?"},
    ]
    assert render(tokenizer, [hh])[0].count("<|im_start|>") == 4  # three turns and the assistant's to come
    assert messages_of("the cat sat") == [{"role": "user", "content": "the cat sat"}]

    plain = configure(load_tokenizer(chat_model), "none")
    assert render(plain, ["the cat"]) == ["the cat"] and stop_ids(plain) == [plain.eos_token_id]
    # a model without a template: auto changes nothing
    micro = configure(load_tokenizer(micro_model), "auto")
    assert render(micro, ["the cat"]) == ["the cat"] and stop_ids(micro) == [micro.eos_token_id]


def test_a_template_file_is_used_and_a_missing_one_is_named(micro_model, tmp_path):
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]")
    tokenizer = configure(load_tokenizer(micro_model), str(template))
    assert render(tokenizer, ["the cat"]) == ["[user] the cat\n[assistant]"]
    with pytest.raises(ConfigError, match="--chat-template must be auto, none or a template file"):
        configure(load_tokenizer(micro_model), str(tmp_path / "missing.jinja"))


def test_generation_stops_at_the_end_of_turn_token(chat_model):
    policy, tokenizer = load_policy(chat_model, chat_template="auto")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def likelier_end(module, inputs, logits):  # the end of turn: likely (not certain) at every position
        return logits + 4.0 * torch.nn.functional.one_hot(torch.tensor(end), logits.shape[-1])

    policy.lm_head.register_forward_hook(likelier_end)
    prompts = render(tokenizer, ["the cat"] * 16)
    r = sample(policy.eval(), tokenizer, prompts, max_new_tokens=6, seed=0)
    stops = torch.isin(r.response_ids, torch.tensor([end, tokenizer.eos_token_id]))
    assert r.ended == stops.any(1).tolist()
    first = stops.float().argmax(1)
    ended = stops.any(1)
    assert (r.response_mask.sum(1)[ended] == first[ended] + 1).all()  # the response ends at its first stop
    last = r.response_ids.gather(1, (r.response_mask.sum(1).long() - 1)[:, None]).squeeze(1)
    assert (last[ended] == end).any()  # ... and some ended at the end of turn, not at EOS
    configure(tokenizer, "none")  # the same sampling without the template's stop runs on past the end of turn
    r = sample(policy.eval(), tokenizer, prompts, max_new_tokens=6, seed=0)
    ends = (r.response_ids == end) & (r.response_mask > 0)
    assert ends.any() and (ends.float().argmax(1)[ends.any(1)] < r.response_mask.sum(1)[ends.any(1)] - 1).any()


def test_a_run_samples_its_prompts_through_the_template_and_remembers_it(chat_model, tmp_path):
    from rlhflab.methods.ppo import PPOConfig

    run = RunDir(tmp_path / "run")
    config = build(PPOConfig, steps=2, prompts_per_step=8, minibatch_size=4, epochs=1, max_new_tokens=6,
                   sample_every=1)  # fmt: skip
    continued = Setup.resolve(RunDir(tmp_path / "continued"), str(chat_model), "conftest:planted_task")
    assert continued.task.train_prompts[0] == planted_task().train_prompts[0]  # a continuation task: never rendered
    setup = Setup.resolve(run, str(chat_model), "conftest:planted_chat_task")
    stages.optimize(run, "ppo", setup, config, reward="conftest:good_minus_bad", progress=False)
    rows = [json.loads(line) for line in (run / RunDir.TRAIN_SAMPLES).read_text().splitlines()]
    assert rows and all(r["prompt"].startswith("<|im_start|>user\n") for r in rows)
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["stages"]["ppo"]["args"]["chat_template"] == "auto"
    assert run.remembered("chat_template", None) == "auto" and run.remembered("chat_template", "none") == "none"
