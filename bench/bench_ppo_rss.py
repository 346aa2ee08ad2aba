"""Peak resident memory of one ``rlhflab optimize ppo`` run, as the process itself reports it.

Runs the command in this process through ``rlhflab.cli.main`` and prints the peak resident set size
(``ru_maxrss``) with the command, so a model option's memory is read off a real run: e.g. PPO with LoRA on a
135M model (policy base in bfloat16 with an adapter, the reference the adapter switched off, the value function
a LoRA model of its own, the gold reward: no reward model):

    .venv/bin/python bench/bench_ppo_rss.py --model MODEL_FOLDER --task sentiment --reward gold --dtype bfloat16 \\
        --lora-r 16 --steps 2 --prompts-per-step 8 --minibatch-size 4 --max-new-tokens 24

Arguments after the script's name are ``rlhflab optimize ppo``'s (and ``--threads``); ``--run-dir`` defaults to a
temporary folder.
Measured, not asserted: no test depends on it.
"""

from __future__ import annotations

import resource
import sys
import tempfile
from pathlib import Path


def main() -> None:
    args, first = sys.argv[1:], []
    if "--threads" in args:  # an option of rlhflab itself, before the command
        i = args.index("--threads")
        first, args = args[i : i + 2], args[:i] + args[i + 2 :]
    if "--run-dir" not in args:
        args += ["--run-dir", str(Path(tempfile.mkdtemp()) / "ppo")]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from rlhflab.cli import main as rlhflab

    try:
        rlhflab([*first, "optimize", "ppo", "--quiet", *args])
    except SystemExit as e:
        if e.code:
            raise
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kilobytes on Linux
    print(f"peak resident memory {peak:.2f} GiB: rlhflab optimize ppo {' '.join(args)}")


if __name__ == "__main__":
    main()
