"""``rlhflab compare``: the quick preset end to end on the micro model, and the budget table by hand."""

import csv
import json

import pytest
from clirun import rlhflab

from rlhflab.pipeline.compare import budget_table, budget_warnings, point_name, preset


@pytest.fixture(scope="module")
def quick_compare(micro_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare") / "cmp"
    out = rlhflab(
        "compare", "--quick", "--model", micro_model, "--task", "conftest:planted_task", "--run-dir", root, "--quiet"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return root, out


def test_frontier_has_one_row_per_method_and_knob_value(quick_compare):
    root, _ = quick_compare
    with open(root / "frontier.csv") as f:
        rows = list(csv.DictReader(f))
    expected = [(s.method, str(v)) for s in preset("quick").sweeps for v in s.values]
    assert [(r["method"], r["value"]) for r in rows[1:]] == expected
    assert rows[0]["method"] == "base" and float(rows[0]["kl"]) == 0.0
    assert len(rows) == 1 + len(expected) == 11
    for r in rows[1:]:
        assert float(r["kl"]) == float(r["kl"])  # a number, not NaN or empty
        assert -1.0 <= float(r["gold"]) <= 1.0
        point = root / "points" / point_name(r["method"], r["knob"], float(r["value"]))
        stages = json.loads((point / "manifest.json").read_text())["stages"]  # every point is a recorded run
        assert stages[r["method"]]["status"] == "done" and stages["evaluate"]["status"] == "done"
    # best-of-n's analytic bound is in the file, and the sampled estimate is below it
    bon = [r for r in rows if r["method"] == "best-of-n" and r["value"] == "4"][0]
    assert float(bon["kl_bound"]) == pytest.approx(0.6362943611)
    assert (root / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_budget_file_has_a_row_per_method(quick_compare):
    root, out = quick_compare
    with open(root / "budgets.csv") as f:
        table = list(csv.DictReader(f))
    assert [e["method"] for e in table] == ["base"] + list(dict.fromkeys(s.method for s in preset("quick").sweeps))
    assert set(table[0]) >= {"best_gold_kl<=1", "best_gold_kl<=3", "best_gold_kl<=10"}
    assert "best gold within KL" in out.stdout


def test_finished_points_are_not_run_again(quick_compare):
    root, _ = quick_compare
    before = (root / "points" / "dpo-beta-0.1" / "summary.json").stat().st_mtime_ns
    out = rlhflab(
        "compare", "--quick", "--model", root.parent / "missing-is-fine-when-done", "--task", "conftest:planted_task",
        "--run-dir", root, "--quiet", "--methods", "dpo",
    )  # fmt: skip
    # the shared reward model exists, so only the base evaluation needs the model: a missing one is an error
    assert out.returncode == 2 and "missing-is-fine-when-done" in out.stderr
    out = rlhflab(
        "compare", "--quick", "--model", _model_of(root), "--task", "conftest:planted_task",
        "--run-dir", root, "--quiet", "--methods", "dpo",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "[dpo]" not in out.stdout
    assert (root / "points" / "dpo-beta-0.1" / "summary.json").stat().st_mtime_ns == before
    with open(root / "frontier.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["base", "dpo", "dpo"]


def _model_of(root):
    import json

    return json.loads((root / "compare.json").read_text())["model"]


def test_unknown_method_and_bad_budgets(tmp_path, micro_model):
    out = rlhflab("compare", "--quick", "--model", micro_model, "--run-dir", tmp_path / "c", "--methods", "ppo,sgd")
    assert out.returncode == 2 and "unknown sgd" in out.stderr
    out = rlhflab("compare", "--quick", "--model", micro_model, "--run-dir", tmp_path / "c", "--budgets", "1,x")
    assert out.returncode == 2 and "--budgets" in out.stderr
    out = rlhflab("compare", "--quick", "--model", micro_model, "--run-dir", tmp_path / "c", "--budgets", "0,3")
    assert out.returncode == 2 and "budgets" in out.stderr
    assert not (tmp_path / "c" / "frontier.csv").exists()


# ---------------------------------------------------------------- the budget table, by hand


def row(method, value, gold, kl, kl_bound=None):
    return {"method": method, "knob": "k", "value": value, "gold": gold, "kl": kl, "kl_bound": kl_bound}


def test_budget_table_picks_the_best_gold_within_each_budget():
    rows = [
        row("base", "", 0.1, 0.0),
        row("ppo", 0.5, 0.3, 0.8),
        row("ppo", 0.1, 0.6, 2.5),
        row("ppo", 0.01, 0.5, 9.0),  # more KL, less gold: not the best within 10
        row("best-of-n", 4, 0.4, 0.2, kl_bound=0.64),
        row("best-of-n", 16, 0.7, 0.9, kl_bound=1.84),  # the bound, not the estimate, decides
        row("dpo", 0.1, 0.9, 12.0),
    ]
    table = {e["method"]: e for e in budget_table(rows, (1.0, 3.0, 10.0))}
    assert table["base"]["best_gold_kl<=1"] == 0.1
    assert [table["ppo"][f"best_gold_kl<={b}"] for b in (1, 3, 10)] == [0.3, 0.6, 0.6]
    assert [table["ppo"][f"at_kl<={b}"] for b in (1, 3, 10)] == [0.5, 0.1, 0.1]
    assert [table["best-of-n"][f"best_gold_kl<={b}"] for b in (1, 3, 10)] == [0.4, 0.7, 0.7]
    assert [table["dpo"][f"best_gold_kl<={b}"] for b in (1, 3, 10)] == [None, None, None]
    assert budget_warnings(budget_table(rows, (1.0, 3.0)), (1.0, 3.0)) == []


def test_a_budget_no_run_reached_is_named():
    rows = [row("base", "", 0.1, 0.0), row("ppo", 0.1, 0.6, 2.5)]
    table = budget_table(rows, (0.5, 3.0))
    (warning,) = budget_warnings(table, (0.5, 3.0))
    assert "0.5 nats" in warning and "only the base policy" in warning


def test_unknown_preset():
    from rlhflab.errors import ConfigError

    with pytest.raises(ConfigError, match="small"):
        preset("huge")
