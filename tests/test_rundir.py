"""The run directory: atomic files, crash-tolerant trajectories, checkpoints, manifest."""

import json

import pytest

from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.core.files import append_jsonl, atomic_write_json, read_jsonl, truncate_jsonl
from rlhflab.run.rundir import RunDir


def test_jsonl_ignores_a_last_line_cut_short_but_not_a_bad_middle_line(tmp_path):
    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2})
    with path.open("a") as f:
        f.write('{"step": 3, "lo')  # a crash in the middle of an append
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{oops\n{"step": 3}\n')
    with pytest.raises(DataError, match=r"m.jsonl, line 2: not valid JSON"):
        read_jsonl(path)


def test_truncate_keeps_the_first_rows(tmp_path):
    path = tmp_path / "m.jsonl"
    for i in range(5):
        append_jsonl(path, {"step": i})
    truncate_jsonl(path, 3)
    assert [r["step"] for r in read_jsonl(path)] == [0, 1, 2]


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a" / "x.json", {"k": 1})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"k": 1}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]


def test_checkpoints_commit_and_keep_the_last_two(tmp_path):
    run = RunDir(tmp_path)
    assert run.latest_checkpoint("ppo") is None
    for step in (3, 6, 9):
        tmp, final = run.new_checkpoint_dir("ppo", step)
        (tmp / "state").write_text(str(step))
        run.commit_checkpoint("ppo", tmp, final)
    assert run.latest_checkpoint("ppo").name == "step-0000009"
    assert [p.name for p in run.iter_checkpoints("ppo")] == ["step-0000006", "step-0000009"]
    # a checkpoint being written (not committed) is never the latest
    run.new_checkpoint_dir("ppo", 12)
    assert run.latest_checkpoint("ppo").name == "step-0000009"
    # kept in the order of their numbers, also past 7 digits (reward ensembles number checkpoints member * 1e6 + step)
    for step in (9_000_000, 9_000_010, 10_000_000, 10_000_010):
        tmp, final = run.new_checkpoint_dir("ppo", step)
        run.commit_checkpoint("ppo", tmp, final)
        assert run.latest_checkpoint("ppo") == final
    assert [p.name for p in run.iter_checkpoints("ppo")] == ["step-10000000", "step-10000010"]


def test_manifest_records_each_stage(tmp_path):
    run = RunDir(tmp_path / "run")
    inputs = tmp_path / "pairs.jsonl"
    inputs.write_text("x")
    run.begin_stage("reward", {"lr": 0.1}, {"pairs": inputs}, args={"model": "m"})
    stage = run.stage("reward")
    assert stage["status"] == "running" and stage["config"] == {"lr": 0.1} and stage["args"] == {"model": "m"}
    assert stage["inputs"]["pairs"]["sha256"] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    assert "torch" in stage["packages"]
    run.end_stage("reward", "done", results={"acc": 1.0})
    assert run.stage("reward")["status"] == "done" and run.stage("reward")["results"] == {"acc": 1.0}
    with pytest.raises(RlhflabError, match="no 'ppo' stage"):
        run.stage("ppo")
    run.manifest_path.write_text("{broken")
    with pytest.raises(DataError, match="manifest.json"):
        run.manifest()


def test_the_manifest_stays_valid_json_when_a_result_is_nan(tmp_path):
    """rlhflab reads JSON strictly (NaN refused); its own manifest must therefore never hold NaN."""
    run = RunDir(tmp_path / "run")
    run.begin_stage("reward", {"lr": float("inf")})
    run.end_stage("reward", "done", results={"val/loss": float("nan"), "steps": 3})
    stage = run.stage("reward")  # reads back with the strict reader
    assert stage["results"] == {"val/loss": None, "steps": 3} and stage["config"] == {"lr": None}
