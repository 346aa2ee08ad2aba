"""The stages of a run, each reading and writing files in the run directory.

The command line (``rlhflab feedback simulate``, ``reward train``, ``optimize ppo``,
``evaluate``) calls one stage each; ``rlhflab demo`` calls them in order. Every stage
records its resolved configuration and inputs in ``manifest.json`` before it starts and
its status when it ends (done, interrupted or failed).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

from rlhflab.errors import RlhflabError
from rlhflab.run.rundir import RunDir, atomic_write_json, atomic_write_text


def _is_main() -> bool:
    from rlhflab.rollout import distributed

    return distributed.state().is_main_process


@contextlib.contextmanager
def stage(
    run: RunDir, name: str, config: Any, args: dict[str, Any], inputs: dict[str, Path] | None = None
) -> Iterator[dict]:
    """Record the stage in the manifest around its work; yields a dict for the stage's results."""
    main = _is_main()
    if main:
        run.begin_stage(name, asdict(config) if config is not None else {}, inputs, args=args)
    results: dict = {}
    try:
        yield results
    except KeyboardInterrupt:
        if main:
            run.end_stage(name, "interrupted")
        raise
    except BaseException as e:
        if main:
            run.end_stage(name, "failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise
    if main:
        run.end_stage(name, "done", results=results)


def feedback_simulate(
    run: RunDir, model: str, task_name: str, config, rater, pad_token: str | None = None, progress: bool = True
) -> dict:
    from rlhflab.feedback.simulated import simulate_feedback
    from rlhflab.rollout.models import load_policy
    from rlhflab.feedback.pairs import write_pairs
    from rlhflab.tasks import load_task

    task = load_task(task_name)
    policy, tokenizer = load_policy(model, pad_token)
    policy.eval()
    with stage(
        run, "feedback", config, {"model": model, "task": task_name, "pad_token": pad_token, "rater": asdict(rater)}
    ) as results:
        pairs, stats = simulate_feedback(policy, tokenizer, task, rater, config, progress=progress)
        if not pairs:
            raise RlhflabError(
                "every sampled pair had two identical continuations; nothing to label "
                "(raise --temperature or --max-new-tokens)"
            )
        write_pairs(run / "pairs.jsonl", pairs)
        results.update(stats)
    return results


def reward_train(
    run: RunDir,
    model: str,
    pairs_path: Path,
    config,
    pad_token: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    from rlhflab.feedback.pairs import read_pairs
    from rlhflab.reward.model import train_reward_model

    pairs = read_pairs(pairs_path)
    with stage(
        run, "reward", config, {"model": model, "pairs": str(pairs_path), "pad_token": pad_token}, {"pairs": pairs_path}
    ) as results:
        results.update(train_reward_model(model, pairs, run, config, pad_token, resume=resume, progress=progress))
    return results


def _reward_fn(reward: str, task, device):
    """A reward function and, for a reward model, its folder: ``gold`` (the task's gold scorer), a
    reward-model folder, or ``package.module:function`` (a rule: (prompts, completions) -> scores)."""
    import torch

    from rlhflab.reward.model import RewardModel

    if reward == "gold":

        def gold(prompts, completions):
            return torch.tensor(task.gold(prompts, completions), dtype=torch.float32)

        return gold, None
    path = Path(reward)
    if path.is_dir():
        return RewardModel.load(path, device=device), str(path)
    if ":" in reward and not path.exists():
        import importlib

        module_name, fn_name = reward.split(":", 1)
        try:
            rule = getattr(importlib.import_module(module_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise RlhflabError(f"--reward {reward!r}: could not import the rule ({e})") from None

        def scored(prompts, completions):
            return torch.tensor([float(x) for x in rule(prompts, completions)], dtype=torch.float32)

        return scored, None
    raise RlhflabError(
        f"--reward {reward!r}: no such reward-model folder (train one with 'rlhflab reward train'), and not "
        "'gold' or a rule 'module:function'"
    )


METHODS = ("ppo", "dpo", "best-of-n", "ranked-sft", "conditional", "rloo", "grpo")
"""Every optimisation method, by its command-line name (also its stage name in the manifest)."""


def optimize(
    run: RunDir,
    method: str,
    model: str,
    task_name: str,
    config,
    reward: str | None = None,
    pairs: Path | None = None,
    pad_token: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Run one optimisation method; record it as the stage ``method`` of the run's manifest.

    Methods that learn from a reward (PPO, best-of-n, ranked fine-tuning, conditional training,
    RLOO, GRPO) take ``reward``; DPO takes ``pairs``.
    """
    from rlhflab.rollout import distributed
    from rlhflab.tasks import load_task

    if method not in METHODS:
        raise RlhflabError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    task = load_task(task_name)
    args = {
        "model": model,
        "task": task_name,
        "pad_token": pad_token,
        "reward": reward,
        "pairs": str(pairs) if pairs else None,
    }
    common = {"pad_token": pad_token, "resume": resume, "progress": progress}
    if method == "dpo":
        from rlhflab.methods.dpo import train_dpo
        from rlhflab.feedback.pairs import read_pairs

        data = read_pairs(pairs)
        with stage(run, method, config, args, {"pairs": pairs}) as results:
            results.update(train_dpo(model, data, run, config, **common))
        return results
    if method == "best-of-n":
        from rlhflab.methods.best_of_n import make_best_of_n

        _reward_fn(reward, task, "cpu")  # fail now, not at evaluation, if the reward cannot be loaded
        with stage(run, method, config, args) as results:
            results.update(make_best_of_n(model, reward, run, config))
        return results
    reward_fn, reward_model = _reward_fn(reward, task, distributed.state().device)
    with stage(run, method, config, args) as results:
        if method == "ppo":
            from rlhflab.methods.ppo import train_ppo

            out = train_ppo(
                model,
                reward_fn,
                task.train_prompts,
                run,
                config,
                value_model_name=reward_model,
                gold=task.gold,
                **common,
            )
        else:
            from rlhflab.methods.conditional import train_conditional
            from rlhflab.methods.grpo import train_grpo
            from rlhflab.methods.ranked_sft import train_ranked_sft
            from rlhflab.methods.rloo import train_rloo

            train = {
                "ranked-sft": train_ranked_sft,
                "conditional": train_conditional,
                "rloo": train_rloo,
                "grpo": train_grpo,
            }[method]
            out = train(model, reward_fn, task.train_prompts, run, config, gold=task.gold, **common)
        results.update(out)
    return results


def optimize_ppo(
    run: RunDir,
    model: str,
    reward: str,
    task_name: str,
    config,
    pad_token: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    return optimize(
        run, "ppo", model, task_name, config, reward=reward, pad_token=pad_token, resume=resume, progress=progress
    )


def evaluate_run(
    run: RunDir,
    policy: str,
    base: str,
    task_name: str,
    reward: str | None,
    config,
    pad_token: str | None = None,
    progress: bool = True,
) -> dict:
    import json

    from rlhflab.evaluation.evaluate import evaluate, format_table
    from rlhflab.tasks import load_task

    task = load_task(task_name)
    proxy = None
    if reward not in (None, "", "none"):
        proxy, _ = _reward_fn(reward, task, "cpu")

    def reward_loader(name: str):  # the reward a best-of-n sampler selects with
        return proxy if name == reward and proxy is not None else _reward_fn(name, task, "cpu")[0]

    with stage(
        run,
        "evaluate",
        config,
        {"policy": policy, "base": base, "task": task_name, "reward": reward, "pad_token": pad_token},
    ) as results:
        summary, rows = evaluate(
            policy, base, task, config, proxy=proxy, pad_token=pad_token, progress=progress, reward_loader=reward_loader
        )
        atomic_write_text(run / "samples.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        atomic_write_json(run / "summary.json", summary)
        results.update(
            {
                "gold_base": summary["base"]["gold"],
                "gold_policy": summary["policy"]["gold"],
                "kl": summary["policy"]["kl"],
            }
        )
    if _is_main():
        print(format_table(summary))
    return summary


def default_from_manifest(run: RunDir, stage_name: str, key: str) -> Any:
    """An argument recorded by an earlier stage (e.g. the model the policy started from)."""
    try:
        return run.stage(stage_name)["args"].get(key)
    except RlhflabError:
        return None


def base_model_of(run: RunDir) -> str | None:
    """The model the run's optimisation started from (the last method stage that finished)."""
    stages = run.manifest().get("stages", {})
    done = [(s.get("finished", ""), name) for name, s in stages.items() if name in METHODS]
    if not done:
        return None
    return stages[max(done)[1]].get("args", {}).get("model")


def diagnose_run(
    run: RunDir, policy: str, base: str, task_name: str, config, pad_token: str | None = None, progress: bool = True
) -> dict:
    """Model-dependent diagnostics of a run -> RUN/diagnostics.json (needs RUN/samples.jsonl from evaluate)."""
    from rlhflab.evaluation.diagnose import diagnose
    from rlhflab.feedback.pairs import read_pairs
    from rlhflab.run.rundir import read_jsonl
    from rlhflab.tasks import load_task

    task = load_task(task_name)
    if not (run / "samples.jsonl").is_file():
        raise RlhflabError(f"{run.path}: no samples.jsonl (run 'rlhflab evaluate' first)")
    samples = read_jsonl(run / "samples.jsonl")
    pairs = read_pairs(run / "pairs.jsonl") if (run / "pairs.jsonl").is_file() else []
    with stage(
        run,
        "diagnose",
        config,
        {"policy": policy, "base": base, "task": task_name, "pad_token": pad_token},
        {"samples": run / "samples.jsonl"},
    ) as results:
        out = diagnose(
            policy, base, task.heldout_text, samples, pairs, task.eval_prompts, task.gold, config, pad_token, progress
        )
        atomic_write_json(run / "diagnostics.json", out)
        cal = out["calibration"]
        if "base" in cal:
            results.update(ece_base=cal["base"]["ece"], ece_policy=cal["policy"]["ece"])
        if "steps" in out["remisalignment"]:
            results["remisalignment_steps"] = out["remisalignment"]["steps"]
    return out
