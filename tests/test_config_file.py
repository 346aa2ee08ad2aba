"""``--config FILE.yaml``: settings from a file, flags override them, every error names file and line."""

import json
from pathlib import Path

import click
import pytest
import yaml
from clirun import rlhflab

from rlhflab.cli import cli
from rlhflab.cli.config_file import OPTION, read_settings
from rlhflab.core.errors import DataError

TASK = ["--task", "conftest:planted_task"]


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def resolve(command_path: tuple[str, ...], config_file, *args: str) -> dict:
    """The values the command would receive: parse ``--config FILE args`` without running the command."""
    command = cli
    for name in command_path:
        command = command.commands[name]
    args = (*args, "--run-dir", "unused")  # required by some commands; nothing runs
    ctx = command.make_context(" ".join(("rlhflab", *command_path)), [OPTION, str(config_file), *args])
    return ctx.params


def test_settings_are_read_with_their_lines(tmp_path):
    path = write(tmp_path, "steps: 5\noptimizer:\n  lr: 1.0e-3\n\nrater: {temperature: 0.1}\nname: null\n")
    assert read_settings(path) == [
        (("steps",), 5, 1),
        (("optimizer", "lr"), 1e-3, 3),
        (("rater", "temperature"), 0.1, 5),
        (("name",), None, 6),
    ]
    assert read_settings(write(tmp_path, "", "empty.yaml")) == []
    assert read_settings(write(tmp_path, '{"steps": 3}', "c.json")) == [(("steps",), 3, 1)]  # JSON is YAML


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("steps: 5\nsteps: 6\n", 2, "'steps' is set twice"),
        ("- steps\n", 1, "must be a mapping"),
        ("steps: 5\nlr: [1, 2\n", 3, "not valid YAML"),
        ("steps: 5\n? [a, b]\n: 3\n", 2, "a key must be an option name"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, text, line, message):
    with pytest.raises(DataError, match=message) as e:
        read_settings(write(tmp_path, text))
    assert e.value.line == line and e.value.path == str(tmp_path / "c.yaml")


def test_file_values_are_defaults_and_flags_win(tmp_path):
    path = write(
        tmp_path,
        "steps: 7\nadaptive_kl: true\nkl-target: 3\noptimizer: {lr: 2.0e-4}\nsampling: {temperature: 0.9}\n"
        "run: {seed: 4}\nreward: gold\n",
    )
    params = resolve(("optimize", "ppo"), path, "--steps", "9", "--no-adaptive-kl")
    assert params["steps"] == 9 and params["adaptive_kl"] is False  # the flags
    assert params["kl_target"] == 3.0 and params["lr"] == 2e-4 and params["temperature"] == 0.9
    assert params["seed"] == 4 and params["reward_name"] == "gold"
    assert resolve(("optimize", "ppo"), write(tmp_path, "", "e.yaml"))["steps"] == 60  # an empty file: the defaults


def test_a_nested_key_prefers_the_prefixed_option(tmp_path):
    path = write(tmp_path, "rater: {temperature: 0.05, random_rate: 0.2}\nsampling: {temperature: 1.1}\n")
    params = resolve(("feedback", "simulate"), path)
    assert params["rater_temperature"] == 0.05 and params["rater_random_rate"] == 0.2
    assert params["temperature"] == 1.1


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("steps: 5\nstepz: 6\n", 2, "'rlhflab optimize ppo' has no option 'stepz'"),
        ("steps: many\n", 1, "'steps': 'many' is not a valid integer"),
        ("lr: 1.0e-4\noptimizer: {lr: 2.0e-4}\n", 2, "'optimizer.lr' sets the same option as 'lr' \\(line 1\\)"),
        ("steps: [1, 2]\n", 1, "'steps' takes one value, got a list"),
    ],
)
def test_bad_settings_name_file_line_and_key(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as e:
        resolve(("optimize", "ppo"), path)
    assert e.value.line == line


def test_a_choice_is_checked(tmp_path):
    with pytest.raises(DataError, match="'ties': 'sometimes' is not one of") as e:
        resolve(("optimize", "dpo"), write(tmp_path, "beta: 0.1\nties: sometimes\n"))
    assert e.value.line == 2


def test_every_command_takes_config():
    def commands(group, path=()):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, (*path, name))
            else:
                yield (*path, name), command

    found = dict(commands(cli))
    assert len(found) >= 20
    missing = [" ".join(p) for p, c in found.items() if not any(OPTION in p.opts for p in c.params)]
    assert not missing


STAGE_COMMANDS = {"feedback": ("feedback", "simulate"), "reward": ("reward", "train"), "evaluate": ("evaluate",),
                  "diagnose": ("diagnose",)}  # fmt: skip


def test_a_manifests_stage_settings_are_a_config_file(micro_run, tmp_path):
    """Each stage's recorded args and config, merged into one file, give the command back the same settings."""
    manifest = json.loads((micro_run / "manifest.json").read_text())
    assert set(manifest["stages"]) >= {"feedback", "reward", "ppo", "evaluate", "diagnose"}
    for stage, record in manifest["stages"].items():
        path = write(tmp_path, yaml.safe_dump({**record["args"], **record["config"]}), f"{stage}.yaml")
        command = STAGE_COMMANDS.get(stage, ("optimize", stage))
        params = resolve(command, path)
        config = record["config"]
        for name, value in flatten_dict(config).items():
            assert params[name] == value, (stage, name)
        for name, value in record["args"].items():
            if not isinstance(value, dict):
                got = params[{"reward": "reward_name", "prompts": "prompts_file"}.get(name, name)]
                assert (str(got) if isinstance(got, Path) else got) == value, (stage, name)


def flatten_dict(config: dict) -> dict:
    out = {}
    for key, value in config.items():
        out.update(flatten_dict(value) if isinstance(value, dict) else {key: value})
    return out


def test_cli_runs_from_a_config_file(micro_model, tmp_path):
    run = tmp_path / "run"
    path = write(
        tmp_path, f"model: {micro_model}\npairs: 6\nsampling: {{max_new_tokens: 4}}\nrater:\n  temperature: 0.05\n"
    )
    out = rlhflab(
        "feedback", "simulate", "--config", path, "--run-dir", run, *TASK, "--pairs", "4", "--quiet", check=True
    )
    record = json.loads((run / "manifest.json").read_text())["stages"]["feedback"]
    assert record["config"]["pairs"] == 4 and record["config"]["sampling"]["max_new_tokens"] == 4
    assert record["args"]["rater"]["temperature"] == 0.05 and record["args"]["model"] == str(micro_model)
    assert "Traceback" not in out.stderr

    bad = write(tmp_path, "pairs: 6\npears: 3\n", "bad.yaml")
    out = rlhflab("feedback", "simulate", "--config", bad, "--run-dir", tmp_path / "r2", *TASK)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"error: {bad}, line 2: 'rlhflab feedback simulate' has no option 'pears'" in out.stderr
