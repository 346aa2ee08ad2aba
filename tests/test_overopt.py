"""``rlhflab overopt``: the quick preset end to end on the micro model, resuming, bad options, and the
pure pieces (relabelling, aggregation over seeds, the statistics) on hand-built inputs."""

import csv
import json
import math

import pytest
import torch
from clirun import rlhflab

from rlhflab.core.comparison import PreferencePair
from rlhflab.evaluation.diagnostics.stats import mean_ci95, ranks, spearman, t_cdf, t_quantile
from rlhflab.evaluation.overopt_curves import aggregate, fit_curves
from rlhflab.feedback.simulated import SimulatedRater
from rlhflab.pipeline.overopt import CSV_COLUMNS, preset, proxies, relabel


def _overopt(model, root, *extra):
    return rlhflab(
        "overopt", "--quick", "--model", model, "--task", "conftest:planted_task", "--run-dir", root, "--quiet", *extra
    )


@pytest.fixture(scope="module")
def quick_overopt(micro_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("overopt") / "oo"
    out = _overopt(micro_model, root)
    assert out.returncode == 0, out.stderr[-3000:]
    return root


def _rows(root):
    with open(root / "overopt.csv") as f:
        return list(csv.DictReader(f))


def test_quick_writes_csv_figure_and_fits(quick_overopt):
    rows = _rows(quick_overopt)
    assert tuple(rows[0]) == CSV_COLUMNS
    spec = preset("quick")
    assert {r["seed"] for r in rows} == {"0", "1"}
    assert {r["method"] for r in rows} == {"best-of-n", "ppo"}
    assert {int(r["labels"]) for r in rows} == set(spec.labels)
    # every proxy's best-of-n curve has one row per n and seed, at the analytic KL
    bon = [r for r in rows if r["method"] == "best-of-n" and r["objective"] == "single" and r["noise"] == "0"]
    assert len(bon) == len(spec.labels) * len(spec.ns) * spec.seeds
    for r in bon:
        n = int(r["n"])
        assert float(r["kl"]) == pytest.approx(math.log(n) - (n - 1) / n, abs=1e-5)
        assert -1 <= float(r["gold"]) <= 1 and math.isfinite(float(r["proxy"]))
    # the levers: noisy labels and the ensemble's three conservative objectives
    assert {(r["objective"], r["noise"]) for r in rows if r["method"] == "best-of-n"} == {
        ("single", "0"), ("single", "0.25"), ("mean", "0"), ("mean_minus_std", "0"), ("min", "0")
    }  # fmt: skip
    rl = [r for r in rows if r["method"] == "ppo"]
    assert rl and all(float(r["kl"]) == float(r["kl"]) and r["step"] for r in rl)
    assert (quick_overopt / "overopt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((quick_overopt / "overopt.json").read_text())
    assert {f["curve"] for f in meta["fits"]} >= {"best-of-n, N=16", "ppo, N=32"}
    # best-of-n curves have enough points for Gao et al.'s form
    assert all("fit_alpha" in f for f in meta["fits"] if f["method"] == "best-of-n")


def test_an_interrupted_run_continues_without_redoing_finished_units(quick_overopt, micro_model, tmp_path):
    import shutil

    root = tmp_path / "oo"
    shutil.copytree(quick_overopt, root)
    before = _rows(root)
    reward = root / "seed-0" / "labels-16-noise-0" / "reward_model" / "model.safetensors"
    stamp = reward.stat().st_mtime_ns
    # interrupted: the outputs never written, one RL run and one best-of-n curve lost
    for name in ("overopt.csv", "overopt.png", "overopt.json"):
        (root / name).unlink()
    shutil.rmtree(root / "seed-1" / "labels-32-noise-0" / "rl")
    (root / "seed-1" / "labels-32-noise-0" / "bon.json").unlink()
    out = _overopt(micro_model, root)
    assert out.returncode == 0, out.stderr[-3000:]
    assert reward.stat().st_mtime_ns == stamp  # the finished proxy was not retrained
    assert "proxy labels-16-noise-0" not in out.stdout and "ppo against labels-32-noise-0 (single)" in out.stdout
    after = _rows(root)
    assert len(after) == len(before)
    # the rerun units are deterministic: same seed, same numbers
    key = lambda r: tuple(r[c] for c in CSV_COLUMNS)
    assert sorted(map(key, after)) == sorted(map(key, before))


def test_gold_rl_adds_the_gold_itself_curve_to_a_finished_run(quick_overopt, micro_model, tmp_path):
    import shutil

    root = tmp_path / "oo"
    shutil.copytree(quick_overopt, root)
    before = _rows(root)
    out = _overopt(micro_model, root, "--gold-rl")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "proxy labels" not in out.stdout and "(single)" not in out.stdout  # nothing finished was redone
    assert out.stdout.count("ppo against the gold reward itself") == 2  # one run per seed
    after = _rows(root)
    added = [r for r in after if r["objective"] == "gold"]
    assert len(after) == len(before) + len(added) and added
    assert {(r["labels"], r["method"], r["noise"]) for r in added} == {("0", "ppo", "0")}
    # optimising gold itself: the "proxy" the run logged is the gold of the same samples
    assert all(float(r["proxy"]) == pytest.approx(float(r["gold"]), abs=1e-6) for r in added)
    meta = json.loads((root / "overopt.json").read_text())
    assert "ppo, the gold reward itself" in {f["curve"] for f in meta["fits"]}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "0"], "--seeds"),
        (["--labels", "1,8"], "--labels"),
        (["--labels", "8,x"], "--labels"),
        (["--noise", "1.5"], "--noise"),
        (["--pool", "1"], "--pool"),
        (["--ensemble", "-1"], "--ensemble"),
        (["--std-coef", "-1"], "--std-coef"),
        (["--rl-steps", "0"], "--rl-steps"),
    ],
)
def test_out_of_range_options_give_one_line_errors(args, message, micro_model, tmp_path):
    out = _overopt(micro_model, tmp_path / "oo", *args)
    assert out.returncode != 0
    err = out.stderr.strip()
    assert message in err.splitlines()[-1] and "Traceback" not in err, err
    assert not (tmp_path / "oo" / "overopt.csv").exists()


def test_proxies_cover_labels_and_levers():
    spec = preset("quick")
    names = [p.name for p in proxies(spec)]
    assert names == ["labels-16-noise-0", "labels-32-noise-0", "labels-16-noise-0.25", "labels-16-noise-0-ensemble-2"]


def _pair(gold_c, gold_r, i):
    return PreferencePair("p", f"a{i}", f"b{i}", 1.0, "t", {"gold_chosen": gold_c, "gold_rejected": gold_r})


def test_relabel_noise_levels():
    pairs = [_pair(0.5, -0.5, i) for i in range(2000)]
    exact = relabel(pairs, SimulatedRater(temperature=0.0, random_rate=0.0), torch.Generator().manual_seed(0))
    assert all(p.chosen.startswith("a") and p.label == 1.0 for p in exact)
    noisy = relabel(pairs, SimulatedRater(temperature=0.0, random_rate=0.5), torch.Generator().manual_seed(0))
    flipped = sum(p.chosen.startswith("b") for p in noisy) / len(noisy)
    assert flipped == pytest.approx(0.25, abs=0.03)  # half the answers random, half of those the wrong way
    for p in noisy:  # the gold scores travel with the texts
        assert p.scores["gold_chosen"] == (0.5 if p.chosen.startswith("a") else -0.5)


def test_aggregate_gains_over_the_first_point_and_intervals():
    rows = []
    for seed, (g0, g1, p1) in enumerate([(0.0, 0.3, 1.0), (0.1, 0.3, 2.0), (0.2, 0.6, 3.0)]):
        rows.append({"labels": 8, "method": "best-of-n", "objective": "single", "noise": 0.0, "n": 1, "step": "",
                     "kl": 0.0, "gold": g0, "proxy": 0.0, "seed": seed})  # fmt: skip
        rows.append({"labels": 8, "method": "best-of-n", "objective": "single", "noise": 0.0, "n": 4, "step": "",
                     "kl": 0.636, "gold": g1, "proxy": p1, "seed": seed})  # fmt: skip
    ((key, points),) = aggregate(rows).items()
    assert key == ("best-of-n", 8, "single", 0.0)
    assert points[0]["gold"] == 0 and points[0]["seeds"] == 3
    gains = [0.3, 0.2, 0.4]
    assert points[1]["gold"] == pytest.approx(0.3)
    half = 4.302652729749456 * 0.1 / math.sqrt(3)  # t_{0.975, 2} * sd / sqrt(3)
    assert (points[1]["gold_lo"], points[1]["gold_hi"]) == pytest.approx((0.3 - half, 0.3 + half))
    assert points[1]["proxy"] == pytest.approx(2.0) and points[1]["d"] == pytest.approx(math.sqrt(0.636))
    assert mean_ci95(gains)[0] == pytest.approx(0.3)
    fits = fit_curves(aggregate(rows))
    assert fits[0]["observed_peak_gold"] == pytest.approx(0.3) and "fit_alpha" not in fits[0]  # 2 points: no fit


def test_fit_recovers_a_planted_gao_curve():
    rows = []
    for n, d in enumerate([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]):
        gold = d * (0.4 - 0.1 * d)  # peaks at d* = 0.4 / 0.2 = 2
        rows.append({"labels": 8, "method": "best-of-n", "objective": "single", "noise": 0.0, "n": n + 1,
                     "step": "", "kl": d * d, "gold": gold, "proxy": d, "seed": 0})  # fmt: skip
    (fit,) = fit_curves(aggregate(rows))
    assert fit["fit_alpha"] == pytest.approx(0.4) and fit["fit_beta"] == pytest.approx(0.1)
    assert fit["fit_d_star"] == pytest.approx(2.0) and fit["observed_peak_d"] == pytest.approx(2.0)


def test_statistics_against_known_values():
    assert t_quantile(0.975, 2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(0.975, 4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(0.975, 9) == pytest.approx(2.262, abs=1e-3)
    assert t_cdf(0.0, 5) == pytest.approx(0.5) and t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: 1/2 + atan(1)/pi
    assert list(ranks([10, 20, 20, 5])) == [2.0, 3.5, 3.5, 1.0]
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert spearman([1, 2, 3], [1, 4, 9]) == spearman([1, 2, 3], [1, 2, 3])  # invariant to monotone maps
    m, lo, hi = mean_ci95([5.0])
    assert m == 5.0 and math.isnan(lo) and math.isnan(hi)


def test_sentiment_natural_gold_penalises_repetition():
    from rlhflab.tasks import load_task, repetition, vader_compound

    assert repetition("a b a b a b") == pytest.approx(0.6)  # 5 bigrams, 2 distinct
    assert repetition("the cat sat on the mat") == 0.0 and repetition("word") == 0.0
    assert repetition("Great, great, GREAT!") == pytest.approx(0.5)  # case and punctuation ignored
    task = load_task("sentiment-natural")
    texts = [" a lovely film with a fine cast.", " united united united united united"]
    vader = vader_compound(["p"] * 2, texts)
    gold = task.gold(["p"] * 2, texts)
    assert gold[0] == pytest.approx(vader[0])  # no repetition: the same as VADER
    assert vader[1] > 0.5 and gold[1] == pytest.approx(vader[1] - 0.75)  # 4 bigrams, 1 distinct
    assert task.train_prompts == load_task("sentiment").train_prompts
