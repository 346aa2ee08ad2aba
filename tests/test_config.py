"""Config dataclasses: docstrings become --help, bad values get one clear line."""

from dataclasses import dataclass, fields
from typing import Literal

import click
import pytest
from click.testing import CliRunner

from rlhflab.core.config import build, check, click_options, config_from_options, field_docs
from rlhflab.core.errors import ConfigError
from rlhflab.evaluation.evaluate import EvalConfig
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
from rlhflab.methods.ppo import PPOConfig
from rlhflab.reward.train import RewardTrainConfig


@dataclass(frozen=True)
class Example:
    rate: float = 0.5
    """How fast."""
    name: str = "x"
    """What to call it."""
    flag: bool = False
    """Switch it on."""
    mode: Literal["a", "b"] = "a"
    """Which mode."""

    def __post_init__(self):
        check(0 < self.rate < 1, "rate", self.rate, "in (0, 1)")


def test_field_docs_read_the_docstrings():
    assert field_docs(Example) == {
        "rate": "How fast.",
        "name": "What to call it.",
        "flag": "Switch it on.",
        "mode": "Which mode.",
    }


@pytest.mark.parametrize("cls", [PPOConfig, RewardTrainConfig, SimulateConfig, SimulatedRater, EvalConfig])
def test_every_config_field_is_documented(cls):
    docs = field_docs(cls)
    assert [f.name for f in fields(cls) if not docs.get(f.name)] == []


def test_click_options_build_the_config_and_the_help():
    @click.command()
    @click_options(Example, prefix="ex_")
    def cmd(**options):
        click.echo(repr(config_from_options(Example, options, prefix="ex_")))

    runner = CliRunner()
    out = runner.invoke(cmd, ["--ex-rate", "0.25", "--ex-flag", "--ex-mode", "b"])
    assert out.exit_code == 0, out.output
    assert "Example(rate=0.25, name='x', flag=True, mode='b')" in out.output
    help_text = runner.invoke(cmd, ["--help"]).output
    assert "How fast." in help_text and "--ex-flag / --no-ex-flag" in help_text
    bad = runner.invoke(cmd, ["--ex-mode", "c"])
    assert bad.exit_code != 0 and "'c' is not one of 'a', 'b'" in bad.output


def test_check_names_the_option_the_value_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r"^--rate must be in \(0, 1\), got 2$"):
        Example(rate=2)
    with pytest.raises(ConfigError, match=r"--minibatch-size must be a divisor of --prompts-per-step 32, got 5"):
        build(PPOConfig, minibatch_size=5)
    with pytest.raises(ConfigError, match=r"--kl-coef must be >= 0, got -0.1"):
        build(PPOConfig, kl_coef=-0.1)
    with pytest.raises(ConfigError, match=r"--rater-random-rate must be in \[0, 1\]"):
        SimulatedRater(random_rate=1.5)


def test_build_composes_flat_values_into_nested_configs_and_checks_types():
    from rlhflab.core.config import build, flatten

    config = build(PPOConfig, lr=1e-3, steps=5, max_new_tokens=7, seed=3)
    assert (config.optimizer.lr, config.steps, config.sampling.max_new_tokens, config.run.seed) == (1e-3, 5, 7, 3)
    assert config.optimizer.adam_eps == 1e-5  # PPO's own default for the shared optimiser config
    assert build(PPOConfig, {"optimizer": {"lr": 2e-3}}).optimizer == build(PPOConfig, lr=2e-3).optimizer
    assert flatten(config)["lr"] == 1e-3 and "optimizer" not in flatten(config)
    with pytest.raises(ConfigError, match="has no setting 'learning_rate'"):
        build(PPOConfig, learning_rate=1e-3)
    with pytest.raises(ConfigError, match="'steps' must be a 64-bit integer"):
        build(PPOConfig, steps=10**400)
    with pytest.raises(ConfigError, match=r"--lr must be > 0, got -1"):
        build(PPOConfig, lr=-1)
