"""The embedded default ships whole: model, tokenizer, task data, data card."""

import re

import pytest

from rlhflab.models.loading import ASSETS, check_fits, load_policy
from rlhflab.models.sampling import sample
from rlhflab.tasks import load_task


@pytest.fixture(scope="module")
def embedded():
    model, tokenizer = load_policy("embedded")
    return model.eval(), tokenizer


def test_loads_with_plain_transformers():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(ASSETS / "base_model")
    tokenizer = AutoTokenizer.from_pretrained(ASSETS / "base_model")
    assert model.config.model_type == "gpt2" and 2e6 < model.num_parameters() < 2e7
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_task_data_fits_the_model(embedded):
    model, tokenizer = embedded
    task = load_task("sentiment")
    assert len(task.train_prompts) > 500 and len(task.eval_prompts) == 300
    assert not set(task.train_prompts) & set(task.eval_prompts)
    check_fits(model, tokenizer, task.train_prompts + task.eval_prompts, max_new_tokens=64)
    assert task.gold(["x", "x"], [" a lovely, happy day.", " a terrible, sad loss."]) == pytest.approx(
        [0.8, -0.8], abs=0.2
    )


def test_shipped_data_is_small_and_documented():
    for name in ("heldout.txt", "heldout_modern.txt"):
        assert (ASSETS / name).stat().st_size <= 1_000_000
    card = (ASSETS / "DATA_CARD.md").read_text()
    for word in ("Brown Corpus", "nlp-corpus", "licence", "Cleaning", "naughty-words", "scripts/build_base_model.py"):
        assert word in card


def test_continuations_are_made_of_english_words(embedded):
    """Most words the model writes are words of the corpus: sentence-shaped English, not sub-word babble."""
    model, tokenizer = embedded
    text = (ASSETS / "heldout.txt").read_text() + (ASSETS / "heldout_modern.txt").read_text()
    vocabulary = set(re.findall(r"[a-z]+", text.lower()))
    prompts = load_task("sentiment").eval_prompts[:64]
    texts = sample(model, tokenizer, prompts, max_new_tokens=24, seed=0, temperature=0.7).responses
    words = [w for t in texts for w in re.findall(r"[a-z]+", t.lower())]
    known = sum(w in vocabulary for w in words) / len(words)
    assert len(words) > 64 * 5 and known > 0.85, known
