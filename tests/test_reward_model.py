"""Reward models learn a planted preference; ensembles aggregate; scores are normalised."""

import random

import pytest
import torch
from conftest import WORDS

from rlhflab.core.comparison import PreferencePair
from rlhflab.core.config import build
from rlhflab.core.files import read_jsonl
from rlhflab.models.batching import lr_at
from rlhflab.reward.bradley_terry import gold_order_accuracy
from rlhflab.reward.bradley_terry import split as split_pairs
from rlhflab.reward.model import RewardModel, aggregate_scores
from rlhflab.reward.train import RewardTrainConfig, train_reward_model
from rlhflab.run.rundir import RunDir

NEUTRAL = [w for w in WORDS if w not in ("good", "bad")]


def planted_pairs(n: int, seed: int = 0) -> list[PreferencePair]:
    """Chosen says 'good' where rejected says 'bad'; otherwise the same words."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(3, 6))]
        at = rng.randrange(len(words) + 1)
        chosen = " " + " ".join(words[:at] + ["good"] + words[at:])
        rejected = " " + " ".join(words[:at] + ["bad"] + words[at:])
        pairs.append(PreferencePair(" ".join(rng.choice(NEUTRAL) for _ in range(2)), chosen, rejected, 1.0, "test"))
    return pairs


def test_aggregate_hand_values():
    scores = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert aggregate_scores(scores, "mean").tolist() == [2.0, 0.0]
    assert aggregate_scores(scores, "min").tolist() == [1.0, 0.0]
    assert aggregate_scores(scores, "mean_minus_std", 0.5).tolist() == [2.0 - 0.5 * 1.0, 0.0]


def test_gold_order_accuracy_hand_values():
    margin = torch.tensor([1.0, -1.0, 2.0, 0.5, -0.5, 3.0])
    gold_diff = torch.tensor([0.2, 0.6, 0.9, 0.0, -0.7, float("nan")])
    # gold differs on pairs 0, 1, 2, 4 (3 is a tie, 5 unknown): right on 0, 2, 4 -> 3/4;
    # at least 0.5 apart: pairs 1, 2, 4 -> right on 2, 4 -> 2/3
    out = gold_order_accuracy(margin, gold_diff)
    assert out == pytest.approx({"val/gold_accuracy": 0.75, "val/gold_accuracy_separated": 2 / 3, "val/gold_pairs": 4})
    assert gold_order_accuracy(margin[:1], gold_diff[:1]) == {"val/gold_accuracy": 1.0, "val/gold_pairs": 1}
    assert gold_order_accuracy(margin[3:4], gold_diff[3:4]) == {}  # only a tie


def test_split_and_schedule():
    pairs = planted_pairs(50)
    train, val = split_pairs(pairs, 0.1, seed=3)
    assert len(val) == 5 and len(train) == 45 and not set(map(id, train)) & set(map(id, val))
    assert split_pairs(pairs, 0.1, seed=3) == (train, val)
    assert lr_at(0, 100, 1.0) == pytest.approx(0.2)  # warm-up over 5 steps
    assert lr_at(4, 100, 1.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0) == 0.0


def train_rm(model, pairs, run, config):
    """Train through the pipeline, as 'rlhflab reward train' does: pairs file in, RUN/reward_model out."""
    from rlhflab.core.comparison import write_pairs
    from rlhflab.pipeline import stages

    write_pairs(run.path.parent / f"{run.path.name}-pairs.jsonl", pairs)
    return stages.reward_train(
        run, str(model), run.path.parent / f"{run.path.name}-pairs.jsonl", config, progress=False
    )


def test_reward_model_learns_a_planted_preference(micro_model, tmp_path):
    run = RunDir(tmp_path / "run")
    config = build(
        RewardTrainConfig,
        epochs=5,
        pairs_per_step=16,
        lr=3e-3,
        val_fraction=0.2,
        eval_every=10,
        checkpoint_every=1000,
        seed=0,
    )
    summary = train_rm(micro_model, planted_pairs(200), run, config)
    assert summary["val_accuracy"] >= 0.9
    rm = RewardModel.load(run / "reward_model")
    fresh = planted_pairs(40, seed=99)
    rc = rm([p.prompt for p in fresh], [p.chosen for p in fresh])
    rr = rm([p.prompt for p in fresh], [p.rejected for p in fresh])
    assert (rc > rr).float().mean() >= 0.9
    # normalised on its training texts: mean 0, standard deviation 1
    train, _ = split_pairs(planted_pairs(200), 0.2, 0)
    texts = [(p.prompt, p.chosen) for p in train] + [(p.prompt, p.rejected) for p in train]
    s = rm([t[0] for t in texts], [t[1] for t in texts])
    assert s.mean().item() == pytest.approx(0.0, abs=1e-3) and s.std().item() == pytest.approx(1.0, abs=1e-2)
    rows = read_jsonl(run / "reward_metrics.jsonl")
    assert len(rows) == summary["steps_per_member"] and rows[-1]["val/accuracy"] >= 0.9
    # the folder is a standard Hugging Face reward model
    from transformers import AutoModelForSequenceClassification

    hf = AutoModelForSequenceClassification.from_pretrained(run / "reward_model")
    assert hf.config.num_labels == 1


def test_ensemble_members_differ_and_aggregate(micro_model, tmp_path):
    run = RunDir(tmp_path / "run")
    config = build(
        RewardTrainConfig,
        epochs=1,
        pairs_per_step=16,
        lr=2e-3,
        ensemble=2,
        aggregate="mean_minus_std",
        std_coef=1.0,
        checkpoint_every=1000,
    )
    train_rm(micro_model, planted_pairs(64), run, config)
    assert (run / "reward_model" / "member-0").is_dir() and (run / "reward_model" / "member-1").is_dir()
    rm = RewardModel.load(run / "reward_model")
    prompts, completions = ["the cat"] * 3, [" good day", " bad day", " it sat"]
    members = rm.member_scores(prompts, completions)
    assert members.shape == (2, 3) and not torch.allclose(members[0], members[1])
    expected = members.mean(0) - members.std(0, unbiased=False)
    assert torch.allclose(rm(prompts, completions), expected)


def test_too_few_pairs_for_the_batch(micro_model, tmp_path):
    from rlhflab.core.errors import DataError

    with pytest.raises(DataError, match="fewer than --pairs-per-step 16"):
        train_rm(micro_model, planted_pairs(10), RunDir(tmp_path), build(RewardTrainConfig, pairs_per_step=16))


def test_non_finite_loss_stops_training_and_writes_no_model(micro_model, tmp_path):
    from rlhflab.core.errors import TrainingDiverged
    from rlhflab.core.loop import Hooks
    from rlhflab.models.loading import load_scalar_model, load_tokenizer

    tokenizer = load_tokenizer(micro_model)
    pairs = planted_pairs(40)  # a NaN label cannot come from a file (the reader refuses it), but can from Python
    pairs[5] = PreferencePair(pairs[5].prompt, pairs[5].chosen, pairs[5].rejected, float("nan"))
    run = RunDir(tmp_path / "run")
    with pytest.raises(
        TrainingDiverged, match=r"reward-model training stopped at step \d+: the Bradley-Terry loss is nan"
    ):
        train_reward_model(
            lambda: load_scalar_model(micro_model, tokenizer.pad_token_id),
            tokenizer,
            pairs,
            build(RewardTrainConfig, pairs_per_step=8, val_fraction=0.0),
            hooks=Hooks(progress=False),
        )
    assert not (run / "reward_model").exists()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_reward_model_trains_with_lora_and_saves_a_plain_model(micro_model, tmp_path, dtype):
    from safetensors import safe_open

    from rlhflab.core.errors import ConfigError

    run = RunDir(tmp_path / "run")
    config = build(RewardTrainConfig, backbone="model", epochs=5, pairs_per_step=16, lr=3e-3, val_fraction=0.2,
                   eval_every=10, checkpoint_every=1000, seed=0, lora_r=8, lora_alpha=16, dtype=dtype)  # fmt: skip
    summary = train_rm(micro_model, planted_pairs(200), run, config)
    assert summary["val_accuracy"] >= 0.85  # the adapter and the head learned the planted preference
    with safe_open(str(run / "reward_model" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("lora_" in k for k in keys)  # merged: loads without peft
    rm = RewardModel.load(run / "reward_model")
    fresh = planted_pairs(40, seed=99)
    rc = rm([p.prompt for p in fresh], [p.chosen for p in fresh])
    rr = rm([p.prompt for p in fresh], [p.rejected for p in fresh])
    assert (rc > rr).float().mean() >= 0.85
    with pytest.raises(ConfigError, match="--save-adapter"):
        build(RewardTrainConfig, lora_r=4, save_adapter=True)
