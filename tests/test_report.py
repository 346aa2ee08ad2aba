"""The report builds from a micro run with every section; bad run directories say what is missing."""

import json
import re
import shutil

import pytest
from clirun import rlhflab
from conftest import copy_run_with_policy_text

from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.report import write_report
from rlhflab.run.rundir import RunDir

SECTIONS = [
    "summary",
    "compendium",
    "overoptimization",
    "diversity",
    "calibration",
    "remisalignment",
    "training",
    "samples",
]
PROBLEMS = [
    "over-optimisation",
    "KL coefficient",
    "mode collapse",
    "attractors",
    "calibration",
    "rater's systematic errors",
    "sycophancy",
    "cheap re-misalignment",
]


def test_demo_writes_a_report_with_every_section(micro_run):
    page = (micro_run / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in page
    for problem in PROBLEMS:
        assert f"<td>{problem.replace(chr(39), '&#x27;')}</td>" in page
    assert page.count("data:image/png;base64,") >= 5 and "data:image/gif;base64," in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    diagnostics = json.loads((micro_run / "diagnostics.json").read_text())
    assert {"calibration", "remisalignment", "embedding_spread"} <= diagnostics.keys()
    assert diagnostics["calibration"]["base"]["tokens"] > 0


def test_model_text_is_escaped_never_rendered(micro_run, tmp_path):
    run = copy_run_with_policy_text(micro_run, tmp_path / "run", ' <script>alert("pwned")</script> <b>bold</b> & more')
    page = write_report([RunDir(run)], run / "report.html").read_text()
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &lt;b&gt;bold&lt;/b&gt; &amp; more" in page
    assert "<script" not in page and "<b>bold</b>" not in page


def test_report_on_several_runs_has_a_column_each(micro_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(micro_run, other)
    page = write_report([RunDir(micro_run), RunDir(other)], tmp_path / "both.html").read_text()
    header = re.search(r"<th>problem</th><th>measurement</th>(.*?)</tr>", page).group(1)
    assert header == f"<th>{micro_run.name}</th><th>other</th>"


def test_missing_or_broken_run_directories_say_what_is_missing(micro_run, tmp_path):
    with pytest.raises(RlhflabError, match="no such run directory"):
        write_report([RunDir(tmp_path / "absent")], tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RlhflabError, match=r"no summary.json \(written by 'rlhflab evaluate'\), no samples.jsonl"):
        write_report([RunDir(tmp_path / "empty")], tmp_path / "r.html")
    broken = tmp_path / "broken"
    shutil.copytree(micro_run, broken)
    (broken / "samples.jsonl").write_text('{"prompt": "p", "base": "b"}\n')
    with pytest.raises(DataError, match=r"samples.jsonl, line 1: missing gold_base, gold_policy, policy"):
        write_report([RunDir(broken)], tmp_path / "r.html")
    (broken / "samples.jsonl").unlink()
    shutil.copy(micro_run / "samples.jsonl", broken / "samples.jsonl")
    (broken / "summary.json").write_text("{not json")
    with pytest.raises(DataError, match="summary.json"):
        write_report([RunDir(broken)], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()  # nothing partial


def test_a_run_without_diagnostics_or_training_still_reports(micro_run, tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    for name in ("summary.json", "samples.jsonl", "manifest.json"):
        shutil.copy(micro_run / name, run / name)
    page = write_report([RunDir(run)], run / "report.html").read_text()
    assert "not measured (run &#x27;rlhflab diagnose&#x27;)" in page
    assert "no training trajectory with gold" in page


def test_report_command(micro_run, tmp_path):
    out = rlhflab("report", micro_run, "--out", tmp_path / "page.html", check=True)
    assert "wrote" in out.stdout and (tmp_path / "page.html").stat().st_size > 10_000
    bad = rlhflab("report", tmp_path / "nothing")
    assert bad.returncode == 2 and "no such run directory" in bad.stderr and "Traceback" not in bad.stderr


def test_a_biased_rater_gets_its_exploitation_row(micro_run, tmp_path):
    run = tmp_path / "biased"
    shutil.copytree(micro_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["feedback"]["args"]["rater"].update(length_bias=0.1, keyword="good", keyword_bias=1.0)
    (run / "manifest.json").write_text(json.dumps(manifest))
    page = write_report([RunDir(run)], run / "report.html").read_text()
    assert "length (biased rater)" in page and "keyword &#x27;good&#x27; (biased rater)" in page
