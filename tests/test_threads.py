"""--threads: a default that follows the idle cores, an explicit count, the record in the manifest, --resume."""

import json

import pytest
import torch

from rlhflab.core import threads
from rlhflab.core.errors import ConfigError


@pytest.mark.parametrize(
    "cores, busy, processes, expected",
    [
        (2, 0.1, 1, 2),  # a quiet 2-core machine: both cores
        (2, 1.0, 1, 1),  # one other busy process: one thread, not two fighting over a core
        (2, 3.5, 1, 1),  # overloaded: still one
        (16, 4.2, 1, 12),  # 11.8 idle cores
        (16, 0.0, 2, 8),  # two processes share the machine
        (16, 10.0, 2, 3),  # ... and its 6 idle cores
        (8, None, 1, 8),  # no load average: every core
        (1, 0.0, 4, 1),
    ],
)
def test_default_threads_by_hand(cores, busy, processes, expected):
    assert threads.default_threads(cores, busy, processes) == expected


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5", " ", "3x"])
def test_a_bad_count_is_refused_in_one_line(bad):
    with pytest.raises(ConfigError, match="--threads must be a positive whole number of threads"):
        threads.parse(bad, "--threads")
    assert threads.parse("3", "--threads") == 3 and threads.parse(None, "--threads") is None


def test_given_and_kept(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(threads.ENV, raising=False)
    try:
        chosen = threads.choose(None)
        assert chosen["chosen"] == "idle cores" and torch.get_num_threads() == chosen["threads"] >= 1
        threads.keep({"threads": 1})  # a resumed stage runs with its recorded count unless one is given
        assert torch.get_num_threads() == 1 and threads.record()["chosen"] == "kept from the interrupted stage"
        threads.choose(2)
        threads.keep({"threads": 1})
        assert torch.get_num_threads() == 2 and threads.record()["chosen"] == "given"
        monkeypatch.setenv(threads.ENV, "1")
        assert threads.choose(None)["threads"] == 1 == torch.get_num_threads()
        threads.keep("not a record")  # an old manifest without one: nothing changes
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        threads._CHOSEN.clear()


def test_the_manifest_records_the_threads(micro_model, tmp_path):
    from clirun import rlhflab

    run = tmp_path / "run"
    rlhflab("--threads", "1", "feedback", "simulate", "--run-dir", run, "--model", micro_model, "--task",
            "conftest:planted_task", "--pairs", "8", "--max-new-tokens", "4", "--quiet", check=True)  # fmt: skip
    record = json.loads((run / "manifest.json").read_text())["stages"]["feedback"]["threads"]
    assert record["threads"] == 1 and record["chosen"] == "given" and record["cores"] >= 1
    out = rlhflab("--threads", "many", "feedback", "simulate", "--run-dir", run)
    assert out.returncode == 2 and "error: --threads must be a positive whole number of threads" in out.stderr
