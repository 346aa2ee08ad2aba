"""Arithmetic asked of a real instruct model (``smollm2``): each difficulty level's pass@1, and what GRPO with the
answer extractor as its reward does to it in minutes.

    .venv/bin/python bench/bench_arithmetic_chat.py --levels 1,2,3          # the base model at each level
    .venv/bin/python bench/bench_arithmetic_chat.py --grpo-steps 40         # GRPO on arithmetic-chat, then both

Every number comes from ``rlhflab`` commands run here (printed as they run), on ``--threads`` CPU threads:

- ``--levels``: ``rlhflab evaluate`` of the model against itself (one model, sampled once) on the first
  ``--problems`` evaluation problems of ``arithmetic-chat-L``: pass@1 is the mean of the gold (the extractor reads
  the number the answer states), beside it the share of answers with no number at all and what the strict
  verifier (a bare integer, as the embedded task wants) would have passed;
- ``--grpo-steps N``: ``rlhflab optimize grpo`` on ``arithmetic-chat`` (the default level) with ``--reward gold``,
  LoRA r16 in bfloat16, then ``rlhflab evaluate`` of the tuned policy against the base on the same problems; the
  table gives both pass@1 values with 1.96 standard errors, the gain and the training's wall time.

Runs are kept under ``--out`` (delete one to redo it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def rlhflab(*args, threads: int) -> None:
    cmd = [sys.executable, "-m", "rlhflab", "--threads", str(threads), *map(str, args)]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def pass_line(name: str, stats: dict) -> str:
    se = 1.96 * (stats.get("gold_stderr") or 0.0)
    return f"{name:>10}  pass@1 {stats['gold']:.3f} ± {se:.3f}  no number {stats.get('unanswered', 0):.1%}"


def strict_share(run: Path, side: str) -> float:
    from rlhflab.tasks.arithmetic_problems import strict

    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    return sum(strict([r["prompt"] for r in rows], [r[side] for r in rows])) / len(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--levels", default="")
    p.add_argument("--grpo-steps", type=int, default=0)
    p.add_argument("--problems", type=int, default=200)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_arithmetic_chat")
    a = p.parse_args()
    common = ["--num-prompts", a.problems, "--max-new-tokens", a.max_new_tokens, "--dtype", "bfloat16",
              "--pass-k-samples", 8, "--pass-k-prompts", 25, "--reward", "none", "--quiet"]  # fmt: skip
    for level in [int(x) for x in a.levels.split(",") if x]:
        run = a.out / f"level{level}"
        if not (run / "summary.json").is_file():
            rlhflab("evaluate", "--run-dir", run, "--task", f"arithmetic-chat-{level}", "--base", a.model,
                    "--policy", a.model, *common, threads=a.threads)  # fmt: skip
        s = json.loads((run / "summary.json").read_text())
        print(pass_line(f"level {level}", s["base"]) + f"  strict verifier {strict_share(run, 'base'):.3f}"
              f"  pass@8 {s['base']['pass_at_k']['8']:.3f}", flush=True)  # fmt: skip
    if a.grpo_steps:
        run = a.out / f"grpo{a.grpo_steps}-seed{a.seed}"
        if not (run / "policy").is_dir():
            t0 = time.time()
            rlhflab("optimize", "grpo", "--run-dir", run, "--task", "arithmetic-chat", "--model", a.model,
                    "--reward", "gold", "--steps", a.grpo_steps, "--prompts-per-step", 4, "--samples-per-prompt", 8,
                    "--minibatch-size", 32, "--max-new-tokens", a.max_new_tokens, "--lora-r", 16, "--dtype",
                    "bfloat16", "--lr", 1e-4, "--seed", a.seed, "--quiet", threads=a.threads)  # fmt: skip
            (run / "wall_s.txt").write_text(f"{time.time() - t0:.0f}\n")
        if not (run / "summary.json").is_file():
            rlhflab("evaluate", "--run-dir", run, "--task", "arithmetic-chat", "--base", a.model, *common,
                    threads=a.threads)  # fmt: skip
        s = json.loads((run / "summary.json").read_text())
        print(pass_line("base", s["base"]))
        print(pass_line("GRPO", s["policy"]) + f"  KL {s['policy']['kl']:.2f} nats")
        gain = s["policy"]["gold"] - s["base"]["gold"]
        print(
            f"gain {100 * gain:+.1f} points after {a.grpo_steps} steps in {(run / 'wall_s.txt').read_text().strip()} s"
        )


if __name__ == "__main__":
    main()
