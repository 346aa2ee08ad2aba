"""The control study end to end at test size (runs, table, report), and clips: MP4 writing always, MuJoCo's
offscreen rendering where the machine has a backend (else its one-line error)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from clirun import rlhflab

from rlhflab.control.clips import side_by_side, write_mp4
from rlhflab.core.errors import RlhflabError


def test_a_test_sized_study_writes_its_table_and_report(tmp_path):
    out = tmp_path / "study"
    args = ["control", "study", "--out", out, "--budgets", "20", "--seeds", "0", "--total-steps", 512,
            "--n-steps", 256, "--rounds", 2, "--initial-steps", 200, "--eval-episodes", 2, "--reward-epochs", 3,
            "--workers", 2, "--no-clips", "--quiet"]  # fmt: skip
    first = rlhflab(*args, check=True)
    table = (out / "study.md").read_text()
    for name in ("true_reward_s0", "labels20_s0", "fooled_reacher-side_s0"):
        assert f"| {name} |" in table and (out / name / "policy.zip").is_file()
    rows = [json.loads(line) for line in (out / "study.jsonl").read_text().splitlines()]
    honest, fooled = rows[0], rows[2]
    assert honest["true_reward"] and honest["labels"] == 0 and fooled["view"] == "reacher-side"
    # the true-reward policy was also scored as the limited teacher scores: the fooled comparison has both sides
    assert honest["limited_teacher"] is not None and fooled["limited_teacher"] == fooled["teacher"]
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") >= 3 and "<script" not in report
    # a second call finds every run finished and runs nothing again
    mtime = (out / "labels20_s0" / "policy.zip").stat().st_mtime
    again = rlhflab(*args, check=True)
    assert (out / "labels20_s0" / "policy.zip").stat().st_mtime == mtime and again.stdout == first.stdout


def test_write_mp4_and_side_by_side(tmp_path):
    frames = np.zeros((10, 31, 33, 3), np.uint8)
    frames[:, :, :16] = 255
    both = side_by_side(frames[:6], frames, gap=4)
    assert both.shape == (10, 31, 70, 3) and (both[6:, :, :33] == frames[5]).all()  # the short clip holds still
    path = write_mp4(both, tmp_path / "clip.mp4")
    data = path.read_bytes()
    assert data[4:8] == b"ftyp" and len(data) > 500 and not list(tmp_path.glob("*.tmp.mp4"))
    with pytest.raises(RlhflabError, match=r"frames of shape \[T, H, W, 3\]"):
        write_mp4(np.zeros((3, 8, 8)), tmp_path / "bad.mp4")


RENDER = """
import numpy as np, sys
from rlhflab.control.clips import render_states
from rlhflab.core.errors import RlhflabError
try:
    frames = render_states("Reacher-v5", np.zeros((3, 8)), size=64)
except RlhflabError as e:
    print("ERROR", e); sys.exit(0)
print("FRAMES", frames.shape, frames.dtype, int(frames.std() > 0))
"""


def test_rendering_a_segment_or_a_one_line_error():
    out = subprocess.run([sys.executable, "-c", RENDER], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    if line.startswith("ERROR"):  # no offscreen GL on this machine: said in one line, with the fix
        assert "could not render Reacher-v5 offscreen" in line and "MUJOCO_GL" in line
    else:
        assert line == "FRAMES (3, 64, 64, 3) uint8 1"
    with pytest.raises(RlhflabError, match="no simulator states"):
        from rlhflab.control.clips import render_states

        render_states("Reacher-v5", np.zeros((3, 0)))


def test_the_reacher_demo_at_smoke_size(tmp_path):
    out = rlhflab("demo", "--task", "reacher", "--quick", "--run-dir", tmp_path / "demo", "--quiet", check=True)
    assert "labels 3, 10, 30 and PPO on the true reward" in out.stdout
    assert "| fooled_reacher-side_s0 | reacher-side | 30 |" in out.stdout and "report.html" in out.stdout
    clips = sorted(p.name for p in (tmp_path / "demo" / "clips").glob("*.mp4"))
    rendered = clips == ["fooled_reacher-side_s0.mp4", "labels30_s0.mp4"]
    assert rendered or "note: clips not rendered: could not render Reacher-v5 offscreen" in out.stdout
    report = (tmp_path / "demo" / "report.html").read_text()
    assert report.count("<video") == (2 if rendered else 0)
    refused = rlhflab("demo", "--task", "reacher", "--model", "smollm2", "--run-dir", tmp_path / "x")
    assert refused.returncode != 0 and "trains a stable-baselines3 policy from scratch" in refused.stderr
