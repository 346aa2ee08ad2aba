"""``rlhflab control study`` and ``rlhflab demo --task reacher``: the label-budget curve, the true-reward
baseline and the fooled teacher, each a ``control train`` run in its own folder, then one table, figures, clips
and a report.

Runs go to a pool of worker processes, one torch thread each (SB3's small networks are fastest so, and two
processes use the two cores of a small machine). While the pool fills the cores, a run refits its reward in its
own process rather than in a second one (the same numbers, without four processes on two cores). A run that already has its ``summary.json`` is not run again,
so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rlhflab.control.clips import render_states, side_by_side, write_mp4
from rlhflab.control.loop import ControlConfig
from rlhflab.control.teachers import Teacher
from rlhflab.core import threads
from rlhflab.core.errors import RlhflabError
from rlhflab.core.files import atomic_write_json, atomic_write_text, read_json, read_jsonl
from rlhflab.pipeline.control import SEGMENTS, control_train
from rlhflab.report.control import num, write_control_report
from rlhflab.run.rundir import RunDir


@dataclass(frozen=True)
class Job:
    name: str
    env: str
    view: str
    seed: int
    config: ControlConfig
    teacher: Teacher
    also_view: str | None = None


def study_jobs(
    env: str, budgets: list[int], seeds: list[int], fooled_view: str | None, config: ControlConfig, teacher: Teacher
) -> list[Job]:
    """PPO on the true reward, one run per label budget, and (with ``fooled_view``) the largest budget taught by a
    teacher who sees only that view; each for every seed."""
    jobs = []
    for seed in seeds:
        jobs.append(Job(f"true_reward_s{seed}", env, "true", seed, replace(config, true_reward=True), teacher,
                        fooled_view))  # fmt: skip
        for n in budgets:
            jobs.append(Job(f"labels{n}_s{seed}", env, "true", seed, replace(config, labels=n), teacher))
        if fooled_view:
            jobs.append(Job(f"fooled_{fooled_view}_s{seed}", env, fooled_view, seed,
                            replace(config, labels=max(budgets)), teacher))  # fmt: skip
    return jobs


def _run(job: Job, folder: str, refit_process: bool) -> dict:
    torch.set_num_threads(1)  # each worker process: one thread
    return control_train(RunDir(folder), job.env, job.view, job.teacher, job.config, job.seed, progress=False,
                         also_view=job.also_view, refit_process=refit_process)  # fmt: skip


def run_study(out: Path, jobs: list[Job], workers: int = 0, progress: bool = True) -> list[dict]:
    """Every job's run under ``out/<name>`` (skipping finished ones); returns the study's rows."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "study.json", {"jobs": [asdict(j) for j in jobs]})
    todo = [j for j in jobs if not (out / j.name / RunDir.SUMMARY).is_file()]
    workers = workers or max(1, min(len(todo), threads.cpus()))
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="control study", unit="run", disable=not progress)
    if todo:
        # spawned, not forked: a fork of a process whose torch thread pool already ran can hang in the child
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            spare = threads.cpus() >= 2 * workers  # a core for each run's refits too
            futures = {pool.submit(_run, j, str(out / j.name), spare): j for j in todo}
            for future in as_completed(futures):
                future.result()  # a failed run stops the study with its own error
                bar.set_postfix_str(futures[future].name)
                bar.update()
    bar.close()
    return [study_row(j, out / j.name) for j in jobs]


def study_row(job: Job, folder: Path) -> dict:
    summary = read_json(folder / RunDir.SUMMARY, "control run summary")
    p = summary["policy"]
    return {
        "name": job.name, "seed": job.seed, "view": job.view,
        "labels": 0 if job.config.true_reward else summary["train"]["labels"],
        "true_reward": job.config.true_reward, "env_steps": summary["train"]["env_steps"],
        "gold": p["gold_return"], "gold_se": p["gold_return_se"], "teacher": p["perceived_return"],
        "looks_done_not_done": p.get("looks_done_not_done"), "spearman_gold": p.get("spearman_gold"),
        "nothing": summary["nothing"]["gold_return"], "random": summary["random"]["gold_return"],
        "limited_teacher": p["perceived_return"] if job.view != "true" else p.get("limited_teacher"),
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    """The study as a markdown table (final policies on fresh episodes, deterministic actions)."""
    lines = [
        "| run | teacher's view | labels | env steps | gold return | teacher's score | learned-vs-true Spearman "
        "| looks done, is not | limited teacher's score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['view']} | {r['labels']} | {r['env_steps']} | {num(r['gold'])} ± {num(r['gold_se'])} "
            f"| {num(r['teacher'])} | {num(r['spearman_gold'], '.3f')} | {num(r['looks_done_not_done'], '.1%')} "
            f"| {num(r['limited_teacher'])} |"
        )
    nothing, rand = [r["nothing"] for r in rows], [r["random"] for r in rows]
    lines.append(f"\nDoing nothing scores {num(float(np.mean(nothing)))} on gold, acting at random "
                 f"{num(float(np.mean(rand)))} (the same fresh episodes).")  # fmt: skip
    return "\n".join(lines) + "\n"


def curves(out: Path, jobs: list[Job]) -> dict[str, list[dict]]:
    """Each run's metric rows (gold, teacher and learned returns along training), by run name."""
    return {
        j.name: read_jsonl(out / j.name / RunDir.METRICS) for j in jobs if (out / j.name / RunDir.METRICS).is_file()
    }


def before_after_clip(out: Path, job: Job, dest: Path, size: int = 128) -> Path:
    """The untrained policy's first segment beside the final round's first (MP4), from the saved states."""
    data = np.load(out / job.name / SEGMENTS)
    rounds = data["round"]
    if len(rounds) == 0:
        raise RlhflabError(f"{out / job.name}: no segments were recorded, so there is nothing to show")
    first, last = int(np.argmin(rounds)), int(np.nonzero(rounds == rounds.max())[0][0])
    frames = [render_states(job.env, data["states"][i], size) for i in (first, last)]
    return write_mp4(side_by_side(*frames), dest)


def control_study(
    out: Path,
    env: str,
    budgets: list[int],
    seeds: list[int],
    fooled_view: str | None,
    config: ControlConfig,
    teacher: Teacher,
    workers: int = 0,
    clips: bool = True,
    progress: bool = True,
) -> dict:
    """The whole study into ``out``: the runs, ``study.md`` (the table), ``study.jsonl`` (its rows), clips of the
    largest budget's and the fooled run's policies before and after (first seed), and ``report.html``."""
    if not budgets or any(b < 1 for b in budgets):
        raise RlhflabError(f"--budgets must be positive label counts, got {budgets}")
    jobs = study_jobs(env, budgets, seeds, fooled_view, config, teacher)
    rows = run_study(out, jobs, workers, progress)
    atomic_write_text(out / "study.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    first = [j for j in jobs if j.seed == seeds[0]]
    shown, notes = [], []
    if clips:
        for job in first:
            if job.config.true_reward or (job.view == "true" and job.config.labels != max(budgets)):
                continue
            try:
                path = before_after_clip(out, job, out / "clips" / f"{job.name}.mp4")
                shown.append((path, f"{job.name}: the untrained policy (left) and the last round's (right)"))
            except RlhflabError as e:
                notes.append(f"clips not rendered: {e}")
                break
    table_md = table(rows) + "".join(f"\n{n}\n" for n in notes)
    atomic_write_text(out / "study.md", table_md)
    report = write_control_report(out, rows, curves(out, first), table_md, shown, f"Preference RL on {env}")
    return {"rows": rows, "report": str(report), "clips": [str(p) for p, _ in shown], "notes": notes}


CONTROL_DEMOS = {"reacher": ("Reacher-v5", "reacher-side")}
"""``rlhflab demo --task NAME``: the env and the fooled teacher's view."""


def run_control_demo(
    out: Path,
    task: str,
    seed: int = 0,
    quick: bool = False,
    labels: int | None = None,
    steps: int | None = None,
    episodes: int | None = None,
    progress: bool = True,
) -> dict:
    """The control demo: labels/9, labels/3 and labels comparisons (900 by default) against PPO on the true reward
    and a teacher who sees only the limited view, one seed, with the report. ``quick``: a smoke-test size."""
    env, view = CONTROL_DEMOS[task]
    labels = labels or (30 if quick else 900)
    size = dict(n_steps=256, rounds=2, initial_steps=200) if quick else {}
    steps, episodes = steps or (1024 if quick else 153_600), episodes or (3 if quick else 20)
    config = ControlConfig(total_steps=steps, eval_episodes=episodes, **size)
    budgets = sorted({max(1, labels // 9), max(1, labels // 3), labels})
    print(f"control demo on {env}: labels {', '.join(map(str, budgets))} and PPO on the true reward, a teacher who "
          f"sees only '{view}', {config.total_steps} env steps each, seed {seed}", flush=True)  # fmt: skip
    t0 = time.time()
    result = control_study(out, env, budgets, [seed], view, config, Teacher(), progress=progress)
    print((out / "study.md").read_text(), flush=True)
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"done in {time.time() - t0:.0f} s; open {result['report']}", flush=True)
    return result
