"""The stages of a run, each reading and writing files in the run directory.

The command line (``rlhflab feedback simulate``, ``reward train``, ``optimize METHOD``,
``evaluate``, ``diagnose``) calls one stage each; ``rlhflab demo`` and ``rlhflab compare`` call
them in order. Every stage records its resolved configuration, the inputs it used and their
hashes in ``manifest.json`` before it starts, and its status when it ends (done, interrupted or
failed). Here the library functions (methods, reward training, evaluation) meet the files:
models are loaded by name, sinks are wired to the run's files, outputs are written.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Iterator

import torch

from rlhflab.core import distributed, threads
from rlhflab.core.comparison import read_pairs, write_pairs
from rlhflab.core.config import SamplingConfig, from_dict
from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.core.files import atomic_write_json, atomic_write_text, jsonl_text, read_json, read_jsonl
from rlhflab.evaluation.diagnose import diagnose
from rlhflab.evaluation.diagnostics.stats import reward_at_chance
from rlhflab.evaluation.evaluate import evaluate, format_table
from rlhflab.feedback.simulated import simulate_feedback
from rlhflab.methods import registry
from rlhflab.methods.registry import METHODS
from rlhflab.models.loading import load_scalar_model, load_tokenizer
from rlhflab.models.precision import ModelConfig, check_device, saveable_policy, trainable_value
from rlhflab.pipeline.rewards import load_reward
from rlhflab.pipeline.setup import Setup
from rlhflab.reward.foreign import is_classifier_folder
from rlhflab.reward.model import META, RewardModel
from rlhflab.reward.train import RewardTrainConfig, backbone_of, train_reward_model
from rlhflab.run.checkpoint import run_hooks, write_model
from rlhflab.run.rundir import RunDir


def _is_main() -> bool:
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


def recorded(run_dir: Path, name: str, config_cls: type, needs: tuple[str, ...] = ("model",)) -> tuple[Any, dict]:
    """(config, args) that stage ``name`` of ``run_dir`` was started with (for ``--resume``); ``needs``: the
    arguments that must be there."""
    run = RunDir(run_dir)
    entry = run.stage(name)
    args = entry.get("args")
    if not isinstance(entry.get("config"), dict) or not isinstance(args, dict):
        raise RlhflabError(f"{run.manifest_path}: the '{name}' stage has no recorded config and arguments")
    if not all(isinstance(args.get(k), str) for k in needs) or not all(
        v is None or isinstance(v, str) for v in args.values()
    ):
        raise DataError(
            run.manifest_path, f"expected strings, {', '.join(needs)} among them", field=f"stages.{name}.args"
        )
    threads.keep(entry.get("threads"))
    return from_dict(config_cls, entry["config"], source=run.manifest_path), args


# ---------------------------------------------------------------- feedback and reward model


def feedback_simulate(run: RunDir, setup: Setup, config, rater, progress: bool = True) -> dict:
    """Sample pairs of continuations of the task's prompts from ``setup.model`` and label them by ``rater``
    -> RUN/pairs.jsonl."""
    policy, tokenizer = setup.loader.policy(setup.model)
    policy.eval()
    args = setup.args(rater=asdict(rater))
    with stage(run, "feedback", config, args, setup.inputs()) as results:
        pairs, stats = simulate_feedback(policy, tokenizer, setup.task, rater, config, progress=progress)
        if not pairs:
            raise RlhflabError(
                "every sampled pair had two identical continuations; nothing to label "
                "(raise --temperature or --max-new-tokens)"
            )
        write_pairs(run / RunDir.PAIRS, pairs)
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
    pairs = read_pairs(pairs_path)
    pad_token = run.pad_token(pad_token)
    backbone = backbone_of(config, model)
    # --pad-token names a token of the policy's tokenizer: it applies when the reward model is built on it
    tokenizer = load_tokenizer(backbone, pad_token if backbone == model else None)
    args = {"model": model, "pairs": str(pairs_path), "pad_token": pad_token}
    with stage(run, "reward", config, args, {"pairs": pairs_path}) as results:
        hooks = run_hooks(run, "reward", resume, run / RunDir.REWARD_METRICS, progress=progress,
                          log_with=config.run.log_with, config=asdict(config))  # fmt: skip

        def fresh():  # a member to train: float32 weights under autocast to --dtype
            return trainable_value(load_scalar_model(backbone, tokenizer.pad_token_id, torch.float32), options)

        options = config.model_options
        check_device(options.torch_dtype, distributed.state().device)
        reward, summary = train_reward_model(fresh, tokenizer, pairs, config, hooks=hooks, source=str(pairs_path))
        summary["backbone"] = backbone
        config_dict = summary.pop("config")
        validation = {k: summary.get(k) for k in ("val_pairs", "val_accuracy", "val_gold_pairs", "val_gold_accuracy")}
        if _is_main():
            reward.save(run / RunDir.REWARD_MODEL, config_dict, validation)
        results.update(summary)
        results["at_chance"] = reward_at_chance(validation)
        if results["at_chance"] and _is_main():
            print(f"warning: {results['at_chance']}", flush=True)
    return results


def resume_reward(run_dir: Path, progress: bool = True) -> dict:
    config, args = recorded(run_dir, "reward", RewardTrainConfig, needs=("model", "pairs"))
    return reward_train(
        RunDir(run_dir), args["model"], Path(args["pairs"]), config, args.get("pad_token"), True, progress
    )


# ---------------------------------------------------------------- optimisation


def optimize(
    run: RunDir,
    method: str,
    setup: Setup,
    config,
    reward: str | None = None,
    pairs: Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Run one method (looked up in the registry) on ``setup.model``; record it as the stage ``method`` of the
    manifest.

    Methods that learn from a reward take ``reward`` (a reward-model folder, 'gold' or a rule);
    methods that learn from pairs take ``pairs`` (``setup`` then resolved with ``read_prompts=False``). Only what
    the method uses is recorded.
    """
    entry = registry.get(method)
    # a method without model options (best-of-n) samples in the run's dtype; the others record theirs in config
    options = getattr(config, "model_options", None) or ModelConfig(dtype=setup.loader.dtype or "float32")
    loader = replace(setup.loader, dtype=options.dtype)
    inputs = registry.MethodInputs(
        model=setup.model, load_policy=lambda dtype=None: loader.policy(setup.model, dtype),
        prompts=list(setup.task.train_prompts), gold=setup.task.gold, load_scalar=loader.scalar,
    )  # fmt: skip
    args = setup.args()
    del args["dtype"]  # a method records its dtype in its config's model options
    files: dict[str, Path] = setup.inputs()
    if entry.data == "pairs":
        if pairs is None:
            raise RlhflabError(f"{method} learns from preference pairs: pass --pairs FILE")
        args["pairs"], files["pairs"] = str(pairs), Path(pairs)
        inputs.pairs, inputs.pairs_source = read_pairs(pairs), str(pairs)
        rendered = setup.render([p.prompt for p in inputs.pairs])  # the pairs' prompts as the policy will see them
        inputs.pairs = [replace(p, prompt=r) for p, r in zip(inputs.pairs, rendered)]
    else:
        if reward is None:
            raise RlhflabError(f"{method} learns from a reward: pass --reward (a reward-model folder, gold, or a rule)")
        args["reward"] = reward
        device = "cpu" if entry.output == "sampler" else setup.device
        inputs.reward, folder = load_reward(reward, setup.task, device, loader, _base(setup.model, config))
        inputs.reward_name = reward
        if folder is not None:
            files["reward_model"] = Path(folder) / META
            meta = read_json(Path(folder) / META, "reward-model metadata") if (Path(folder) / META).is_file() else {}
            chance = reward_at_chance(meta.get("validation") or {}) if isinstance(meta, dict) else None
            if chance and _is_main():
                print(f"warning: {chance} ({folder})", flush=True)
            inputs.value_source = lambda: _value_source(folder, setup.tokenizer)
    with stage(run, method, config, args, files) as results:
        samples = run / RunDir.TRAIN_SAMPLES if entry.logs_samples else None
        run_config = getattr(config, "run", None)
        hooks = run_hooks(run, method, resume, run / RunDir.METRICS, samples, progress,
                          log_with=run_config.log_with if run_config else "none", config=asdict(config))  # fmt: skip
        out = entry.optimize(inputs, config, hooks)
        if out.sampler is not None:
            if _is_main():
                atomic_write_json(run / RunDir.SAMPLER, out.sampler)
        else:
            write_model(run, RunDir.POLICY, saveable_policy(out.policy, options), out.tokenizer, out.policy_files)
        results.update(out.summary)
        if getattr(inputs.reward, "normalisation", None) is not None:  # an off-the-shelf reward model's
            results["reward_normalisation"] = inputs.reward.normalisation
    return results


def _value_source(reward_folder: str, tokenizer) -> str | None:
    """The folder a value function may start from: an off-the-shelf reward model's own folder, or rlhflab's (an
    ensemble's first member's), when it reads the policy's vocabulary (a reward model on another backbone, e.g.
    minilm, scores re-tokenised text: ``tokenizer`` is the policy's); else None."""
    member = reward_folder if is_classifier_folder(reward_folder) else str(RewardModel.member_folder(reward_folder))
    same = load_tokenizer(member).get_vocab() == tokenizer.get_vocab()
    return member if same else None


def _base(model: str, config) -> dict:
    """The base policy and sampling settings an off-the-shelf reward model is normalised with."""
    sampling = getattr(config, "sampling", None) or SamplingConfig()
    return {"model": model, "max_new_tokens": sampling.max_new_tokens, "temperature": sampling.temperature}


def resume_method(run_dir: Path, method: str, progress: bool = True) -> dict:
    """Continue the interrupted ``method`` stage of ``run_dir`` with the configuration it recorded."""
    entry = registry.get(method)
    config, args = recorded(run_dir, method, entry.config, needs=("model", "task"))
    run = RunDir(run_dir)
    setup = Setup.resolve(
        run, args["model"], args["task"], prompts=args.get("prompts"), pad_token=args.get("pad_token"),
        chat_template=args.get("chat_template"), read_prompts=entry.data != "pairs",
    )  # fmt: skip
    pairs = Path(args["pairs"]) if args.get("pairs") else None
    return optimize(run, method, setup, config, args.get("reward"), pairs, resume=True, progress=progress)


def base_model_of(run: RunDir) -> str | None:
    """The model the run's optimisation started from (the last method stage that finished)."""
    stages = run.manifest().get("stages", {})
    done = [(s.get("finished", ""), name) for name, s in stages.items() if name in METHODS]
    if not done:
        return None
    return stages[max(done)[1]].get("args", {}).get("model")


# ---------------------------------------------------------------- evaluation and diagnostics


def evaluate_run(
    run: RunDir,
    policy: str,
    setup: Setup,
    reward: str | None,
    config,
    progress: bool = True,
    base_side=None,
    show: bool = True,
) -> dict:
    """Evaluate ``policy`` (a policy folder or a sampler) against the base ``setup.model`` -> RUN/summary.json and
    RUN/samples.jsonl. ``base_side`` reuses a base evaluation (``compare`` evaluates the base once)."""
    task, loader, base = setup.task, setup.loader, setup.model
    base_policy = _base(base, config)
    proxy = None
    if reward not in (None, "", "none"):
        proxy, _ = load_reward(reward, task, setup.device, loader, base_policy)

    def reward_loader(name: str):  # the reward a best-of-n sampler selects with
        if name == reward and proxy is not None:
            return proxy
        return load_reward(name, task, setup.device, loader, base_policy)[0]

    args = {"policy": str(policy), "base": base, **setup.args(reward=reward)}
    del args["model"]
    with stage(run, "evaluate", config, args, setup.inputs()) as results:
        summary, rows = evaluate(
            str(policy), base, task, config, proxy=proxy, loader=loader, progress=progress,
            reward_loader=reward_loader, base=base_side,
        )  # fmt: skip
        if _is_main():
            atomic_write_text(run / RunDir.SAMPLES, jsonl_text(rows))
            atomic_write_json(run / RunDir.SUMMARY, summary)
        results.update(
            {
                "gold_base": summary["base"]["gold"],
                "gold_policy": summary["policy"]["gold"],
                "kl": summary["policy"]["kl"],
            }  # fmt: skip
        )
        if getattr(proxy, "normalisation", None) is not None:  # an off-the-shelf reward model's
            results["reward_normalisation"] = proxy.normalisation
    if _is_main() and show:
        print(format_table(summary))
    return summary


def diagnose_run(run: RunDir, policy: str, setup: Setup, config, progress: bool = True) -> dict:
    """Model-dependent diagnostics of a run against the base ``setup.model`` -> RUN/diagnostics.json (needs
    RUN/samples.jsonl from evaluate)."""
    samples_path = run / RunDir.SAMPLES
    if not samples_path.is_file():
        raise RlhflabError(f"{run.path}: no {RunDir.SAMPLES} (run 'rlhflab evaluate' first)")
    samples = read_jsonl(samples_path)
    pairs = read_pairs(run / RunDir.PAIRS) if (run / RunDir.PAIRS).is_file() else []
    task = setup.task
    args = {"policy": str(policy), "base": setup.model, **setup.args()}
    del args["model"]
    inputs = {"samples": samples_path, **setup.inputs()}
    with stage(run, "diagnose", config, args, inputs) as results:
        out = diagnose(
            str(policy), setup.model, task.heldout_text, samples, pairs, task.eval_prompts, task.gold, config,
            setup.loader, progress,
        )  # fmt: skip
        atomic_write_json(run / RunDir.DIAGNOSTICS, out)
        cal = out["calibration"]
        if "base" in cal:
            results.update(ece_base=cal["base"]["ece"], ece_policy=cal["policy"]["ece"])
        if out["remisalignment"].get("steps") is not None:
            results["remisalignment_steps"] = out["remisalignment"]["steps"]
    return out
