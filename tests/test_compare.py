"""``rlhflab compare``: the quick preset end to end on the micro model (one seed and two), and the
budget table, the aggregation across seeds and the paired test by hand."""

import csv
import json
import math

import pytest
from clirun import rlhflab

from rlhflab.evaluation.diagnostics.stats import mean_interval, paired_t_test, t_cdf, t_quantile
from rlhflab.evaluation.frontier import (
    aggregate_budgets,
    aggregate_frontier,
    budget_table,
    budget_warnings,
    format_budgets,
    format_frontier,
)
from rlhflab.pipeline.compare import point_name, preset, presets


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
    from rlhflab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="small"):
        preset("huge")


# ---------------------------------------------------------------- several seeds, end to end


@pytest.fixture(scope="module")
def two_seeds(micro_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare2") / "cmp"
    out = rlhflab(
        "compare", "--quick", "--model", micro_model, "--task", "conftest:planted_task", "--run-dir", root, "--quiet",
        "--methods", "best-of-n,dpo", "--seeds", "2", "--seed", "3",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return root, out


def test_two_seeds_run_two_whole_comparisons(two_seeds):
    root, out = two_seeds
    assert not (root / "shared").exists() and not (root / "points").exists()
    for i in (0, 1):
        assert (root / f"seed-{i}" / "shared" / "reward_model" / "rlhflab_reward.json").is_file()
        assert (root / f"seed-{i}" / "points" / "dpo-beta-0.1" / "summary.json").is_file()
    # each seed has its own pairs (seeds 3 and 4), so its own reward model and points
    pairs = [(root / f"seed-{i}" / "shared" / "pairs.jsonl").read_text() for i in (0, 1)]
    assert pairs[0] != pairs[1]
    with open(root / "frontier_seeds.csv") as f:
        per_seed = list(csv.DictReader(f))
    assert [r["seed"] for r in per_seed] == ["3"] * 5 + ["4"] * 5
    with open(root / "frontier.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["value"]) for r in rows] == [(r["method"], r["value"]) for r in per_seed[:5]]
    for r in rows:
        assert r["seeds"] == "2"
        for key in ("gold", "proxy", "kl"):
            lo, mean, hi = float(r[f"{key}_lo"]), float(r[key]), float(r[f"{key}_hi"])
            assert math.isfinite(lo) and math.isfinite(hi) and lo <= mean <= hi
        pair = [float(s["gold"]) for s in per_seed if (s["method"], s["value"]) == (r["method"], r["value"])]
        assert float(r["gold"]) == pytest.approx(sum(pair) / 2)
    assert (root / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((root / "compare.json").read_text())["seeds"] == [3, 4]


def test_two_seeds_budgets_say_what_is_significant(two_seeds):
    root, out = two_seeds
    with open(root / "budgets.csv") as f:
        table = list(csv.DictReader(f))
    assert [e["method"] for e in table] == ["base", "dpo", "best-of-n"]
    assert {"best_gold_kl<=1_lo", "best_gold_kl<=1_hi", "p_vs_best_kl<=1", "significant_kl<=1"} <= set(table[0])
    assert {e["significant_kl<=10"] for e in table} <= {"True", "False", ""}
    assert "±" in out.stdout and "paired t-test" in out.stdout and "[seed-1] [dpo] beta = 0.1" in out.stdout


def test_an_interrupted_multi_seed_comparison_continues(two_seeds, tmp_path):
    import shutil

    root, _ = two_seeds
    summary = root / "seed-1" / "points" / "dpo-beta-0.1" / "summary.json"
    before = summary.stat().st_mtime_ns
    shutil.rmtree(root / "seed-1" / "points" / "dpo-beta-0.5")  # as if stopped before seed 1's last dpo point
    out = rlhflab(
        "compare", "--quick", "--model", _model_of(root), "--task", "conftest:planted_task", "--run-dir", root,
        "--quiet", "--methods", "dpo", "--seeds", "2", "--seed", "3",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    ran = [line for line in out.stdout.splitlines() if line.startswith("[seed-")]
    assert ran == ["[seed-1] [dpo] beta = 0.5"]  # no shared stage, no other point
    assert summary.stat().st_mtime_ns == before
    with open(root / "frontier.csv") as f:
        assert [(r["method"], r["seeds"]) for r in csv.DictReader(f)] == [("base", "2"), ("dpo", "2"), ("dpo", "2")]
    # the other layout is refused, naming what would continue it
    out = rlhflab("compare", "--quick", "--model", _model_of(root), "--run-dir", root, "--seeds", "1")
    assert out.returncode == 2 and "--seeds 2" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    (tmp_path / "one" / "shared").mkdir(parents=True)
    out = rlhflab("compare", "--quick", "--model", _model_of(root), "--run-dir", tmp_path / "one", "--seeds", "3")
    assert out.returncode == 2 and "one-seed comparison" in out.stderr
    assert not (tmp_path / "one" / "seed-0").exists()


@pytest.mark.parametrize("seeds", ["0", "1000"])
def test_bad_seeds_is_one_line(tmp_path, micro_model, seeds):
    out = rlhflab("compare", "--quick", "--model", micro_model, "--run-dir", tmp_path / "c", "--seeds", seeds)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: --seeds must be an integer from 1 to 100, got {seeds}"
    assert not (tmp_path / "c").exists()


def test_presets_have_consecutive_seeds():
    specs = presets("quick", seed=5, seeds=3)
    assert [s.seed for s in specs] == [5, 6, 7]
    assert [s.feedback.seed for s in specs] == [5, 6, 7] and [s.evaluate.seed for s in specs] == [6, 7, 8]
    assert [s.sweeps[0].config.run.seed for s in specs] == [5, 6, 7]
    from rlhflab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--seeds must be an integer from 1 to 100, got -1"):
        presets("quick", seeds=-1)


# ---------------------------------------------------------------- statistics across seeds, by hand


def test_t_quantile_matches_the_tables():
    # two-sided 95% critical values of Student's t
    for dof, expected in ((1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042), (1000, 1.962)):
        assert t_quantile(0.975, dof) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(0.95, 10) == pytest.approx(1.812, abs=5e-4)
    assert t_quantile(0.025, 4) == pytest.approx(-2.776, abs=5e-4)
    assert t_quantile(0.5, 3) == pytest.approx(0.0, abs=1e-9)
    # closed forms: Cauchy (1 dof) and 2 dof
    assert t_cdf(1.0, 1) == pytest.approx(0.75)
    assert t_cdf(2.0, 2) == pytest.approx(0.5 + 1 / math.sqrt(6))
    assert t_cdf(-2.0, 2) == pytest.approx(0.5 - 1 / math.sqrt(6))
    for dof in (1, 2, 3, 7, 20):
        assert t_cdf(t_quantile(0.9, dof), dof) == pytest.approx(0.9, abs=1e-10)
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)


def test_mean_interval_by_hand():
    mean, lo, hi = mean_interval([1.0, 2.0, 3.0])  # sd 1, standard error 1/sqrt(3), t(0.975, 2) = 4.3027
    assert mean == 2.0
    assert (lo, hi) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)))
    assert mean_interval([0.4]) == (0.4, None, None)  # one seed: no interval, not a zero-width one
    assert mean_interval([0.5, 0.5]) == (0.5, 0.5, 0.5)


def test_paired_t_test_by_hand():
    a, b = [0.2, 0.5, 0.8], [0.1, 0.41, 0.69]
    # differences 0.1, 0.09, 0.11: t = 0.1 / (0.01 / sqrt 3) = 17.32 with 2 dof, p = 1 - t / sqrt(2 + t^2)
    t = 0.1 / (0.01 / math.sqrt(3))
    assert paired_t_test(a, b) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-6)
    assert paired_t_test(a, b) < 0.05  # paired: the seeds' spread (0.2 to 0.8) cancels out
    assert paired_t_test([0.5, 0.6, 0.7], [0.7, 0.3, 0.6]) > 0.05  # differences -0.2, 0.3, 0.1
    assert paired_t_test([0.1, 0.2], [0.1, 0.2]) == 1.0
    assert paired_t_test([0.3], [0.1]) is None


def frow(method, value, gold, kl, proxy=0.0, kl_bound=None, run=""):
    return {
        "method": method, "knob": "" if method == "base" else "k", "value": value, "run": run, "gold": gold,
        "gold_stderr": 0.02, "proxy": proxy, "kl": kl, "kl_stderr": 0.1, "kl_bound": kl_bound, "distinct_2": 0.7,
        "entropy": 3.0,
    }  # fmt: skip


def test_aggregate_frontier_by_hand():
    seeds = [
        [frow("base", "", 0.1, 0.0), frow("ppo", 0.1, 0.1, 1.0, proxy=1.0, run="s0/p")],
        [frow("base", "", 0.1, 0.0), frow("ppo", 0.1, 0.2, 2.0, proxy=1.0, run="s1/p")],
        [frow("base", "", 0.1, 0.0), frow("ppo", 0.1, 0.3, 6.0, proxy=1.0, run="s2/p")],
    ]
    base, ppo = aggregate_frontier(seeds)
    half = 4.302653 * 0.1 / math.sqrt(3)  # gold: mean 0.2, sd 0.1
    assert ppo["gold"] == pytest.approx(0.2) and (ppo["gold_lo"], ppo["gold_hi"]) == pytest.approx(
        (0.2 - half, 0.2 + half)
    )
    half = 4.302653 * math.sqrt(7) / math.sqrt(3)  # KL: mean 3, sd sqrt(7)
    assert ppo["kl"] == pytest.approx(3.0) and (ppo["kl_lo"], ppo["kl_hi"]) == pytest.approx((3 - half, 3 + half))
    assert (ppo["proxy_lo"], ppo["proxy"], ppo["proxy_hi"]) == pytest.approx((1.0, 1.0, 1.0))
    assert ppo["seeds"] == 3 and ppo["run"] == "s0/p;s1/p;s2/p" and ppo["kl_bound"] is None
    assert base["kl"] == 0.0 and base["run"] == ""
    (one_base, one_ppo) = aggregate_frontier(seeds[:1])  # one seed: the numbers as they were, blank intervals
    assert one_ppo["gold"] == 0.1 and one_ppo["gold_lo"] is None and one_ppo["kl_hi"] is None
    assert one_ppo["seeds"] == 1 and one_ppo["run"] == "s0/p"
    assert list(one_ppo)[-7:] == ["gold_lo", "gold_hi", "proxy_lo", "proxy_hi", "kl_lo", "kl_hi", "seeds"]
    assert "mean over 3 seeds" in format_frontier([base, ppo])
    assert format_frontier([one_base, one_ppo]) == format_frontier(seeds[0])  # one seed: printed as before


def test_aggregate_budgets_by_hand():
    budgets = (1.0, 3.0)
    gold = {"bon": [0.2, 0.5, 0.8], "dpo": [0.1, 0.41, 0.69], "ppo": [0.9, 0.1, 0.7]}
    seeds = [
        [
            frow("base", "", 0.05, 0.0),
            frow("bon", 4, gold["bon"][i], 0.3, kl_bound=0.64),
            frow("dpo", 0.5, gold["dpo"][i], 0.8),
            frow("ppo", 0.1, gold["ppo"][i], 2.0 if i else 0.9),  # within 1 nat on seed 0 only
        ]
        for i in range(3)
    ]
    tables = [budget_table(rows, budgets) for rows in seeds]
    table = {e["method"]: e for e in aggregate_budgets(tables, budgets)}
    bon, dpo, ppo = table["bon"], table["dpo"], table["ppo"]
    half = 4.302653 * 0.3 / math.sqrt(3)  # bon: 0.2, 0.5, 0.8: mean 0.5, sd 0.3
    assert bon["best_gold_kl<=1"] == pytest.approx(0.5)
    assert (bon["best_gold_kl<=1_lo"], bon["best_gold_kl<=1_hi"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert bon["at_kl<=1"] == 4 and bon["seeds"] == 3
    # at 1 nat bon is best (ppo is missing on two seeds); dpo is below it by 0.09-0.11 on every seed
    assert bon["p_vs_best_kl<=1"] is None and bon["significant_kl<=1"] is None
    t = 0.1 / (0.01 / math.sqrt(3))
    assert dpo["p_vs_best_kl<=1"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-6)
    assert dpo["significant_kl<=1"] is True
    assert ppo["best_gold_kl<=1"] is None and ppo["best_gold_kl<=1_lo"] is None and ppo["significant_kl<=1"] is None
    # base: 0.05 on every seed, below bon by 0.15, 0.45, 0.75: t = 2.6, p = 0.12, not significant with 3 seeds
    assert table["base"]["p_vs_best_kl<=1"] == pytest.approx(1 - 2.598076 / math.sqrt(2 + 2.598076**2), rel=1e-5)
    assert table["base"]["significant_kl<=1"] is False
    # at 3 nats ppo counts: mean 0.567 > bon's 0.5, so ppo is the best and bon is not significantly below it
    assert ppo["best_gold_kl<=3"] == pytest.approx(1.7 / 3) and ppo["at_kl<=3"] == 0.1
    assert ppo["p_vs_best_kl<=3"] is None and bon["significant_kl<=3"] is False
    assert bon["p_vs_best_kl<=3"] == pytest.approx(paired_t_test(gold["bon"], gold["ppo"]))
    (warning,) = budget_warnings(list(table.values()), budgets, tables)
    assert "ppo" in warning and "1 of 3 seeds" in warning
    text = format_budgets(list(table.values()), budgets)
    assert "paired t-test" in text and "±" in text
    assert [line.split()[0] for line in text.splitlines() if "*" in line] == ["dpo", "*"]  # the mark, its footnote


def test_aggregate_budgets_with_one_seed_is_the_budget_table():
    rows = [frow("base", "", 0.1, 0.0), frow("ppo", 0.5, 0.3, 0.8), frow("ppo", 0.1, 0.6, 2.5)]
    table = budget_table(rows, (1.0, 3.0))
    (base, ppo) = aggregate_budgets([table], (1.0, 3.0))
    assert {k: ppo[k] for k in table[1]} == table[1]
    assert ppo["best_gold_kl<=3_lo"] is None and ppo["p_vs_best_kl<=3"] is None and ppo["significant_kl<=3"] is None
    assert format_budgets([base, ppo], (1.0, 3.0)) == format_budgets(table, (1.0, 3.0))
