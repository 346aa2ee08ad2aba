"""Reward refits, here or in a second process while PPO trains on.

A refit is a pure function of its job (``refit``): the ensemble with its new input normalisation, the compared
segments' features, the labels, the steps the output normalisation is fitted on, and the state of the random
generator it draws bootstraps and minibatches from. It returns the new weights and the generator's next state.
So where it runs changes no number: ``Refits(process=True)`` sends each job to a worker
(``python -m rlhflab.control.refit``, one torch thread, talking pickles over its stdin and stdout), and
``Refits(process=False)`` runs it in this process, with identical results. Christiano et al.'s loop runs the
reward's training asynchronously in the same way; the loop decides when a result is installed
(``ControlConfig.refit_lag``), not this module.
"""

from __future__ import annotations

import copy
import os
import pickle
import signal
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from rlhflab.control.reward_net import RewardEnsemble, RewardNetConfig, train_reward
from rlhflab.core.errors import RlhflabError


@dataclass
class RefitJob:
    ensemble: RewardEnsemble
    """A copy of the reward to train (warm start), its input normalisation already fitted."""
    first: np.ndarray
    second: np.ndarray
    """[N, H, in_dim] features of each comparison's two segments."""
    labels: np.ndarray
    """[N] P(first preferred)."""
    pool: np.ndarray
    """[M, H, in_dim] the steps the output normalisation is fitted on."""
    config: RewardNetConfig
    generator_state: torch.Tensor


@dataclass
class RefitResult:
    ensemble_state: dict
    generator_state: torch.Tensor
    metrics: dict


def make_job(
    ensemble: RewardEnsemble,
    features: np.ndarray,
    comparisons: np.ndarray,
    pool: np.ndarray,
    config: RewardNetConfig,
    generator: torch.Generator,
) -> RefitJob:
    """The job of refitting ``ensemble`` (left untouched: the agent may still be using it) on ``comparisons``
    ([n, 3]: indices into ``features`` [segments, H, in_dim] and the label), inputs normalised over every segment,
    outputs over the segments ``pool``."""
    new = copy.deepcopy(ensemble)
    new.fit_inputs(features)  # also drops the copy's frozen fast path: nothing stale is sent
    idx = comparisons[:, :2].astype(int)
    return RefitJob(new, features[idx[:, 0]], features[idx[:, 1]], comparisons[:, 2].copy(), features[pool], config,
                    generator.get_state())  # fmt: skip


def refit(job: RefitJob) -> RefitResult:
    generator = torch.Generator()
    generator.set_state(job.generator_state)
    metrics = train_reward(job.ensemble, job.first, job.second, job.labels, job.config, generator)
    job.ensemble.fit_outputs(job.pool)
    return RefitResult(job.ensemble.state_dict(), generator.get_state(), metrics)


class Refits:
    """At most one refit at a time: ``submit`` a job, later take its ``result`` (waiting for it if need be)."""

    def __init__(self, process: bool):
        self.process = process
        self.worker: subprocess.Popen | None = None
        self.job: RefitJob | None = None
        """The job the worker is running."""
        self.pending: RefitResult | None = None
        """A result computed here, not yet taken."""

    @property
    def busy(self) -> bool:
        """A refit was submitted and its result not yet taken."""
        return self.job is not None or self.pending is not None

    def submit(self, job: RefitJob) -> None:
        if self.busy:
            raise RuntimeError("a refit is already running: take its result first")
        if self.process:
            try:
                self._send(job)
                self.job = job
                return
            except _WorkerUnavailable as e:
                self._inline(str(e))
        self.pending = refit(job)

    def result(self) -> RefitResult:
        if not self.busy:
            raise RuntimeError("no refit was submitted")
        if self.pending is not None:
            out, self.pending = self.pending, None
            return out
        job, self.job = self.job, None
        try:
            status, value = pickle.load(self.worker.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as e:
            code = self.worker.poll()
            self.close()
            raise RlhflabError(f"the reward refit process stopped (exit code {code}): {e or 'no answer'}") from None
        if status == "unavailable":  # the worker could not load the job (e.g. a network class it cannot import)
            self._inline(value)
            return refit(job)
        if status != "ok":
            self.close()
            raise RlhflabError(f"the reward refit failed in its process:\n{value}")
        return value

    def _inline(self, why: str) -> None:
        """From now on, refits run in this process (same numbers: only the wall-clock time differs)."""
        warnings.warn(f"reward refits run in the loop's own process: {why}", stacklevel=3)
        self.close()
        self.process = False

    def _send(self, job: RefitJob) -> None:
        if any(type(m).__module__ == "__main__" for m in job.ensemble.modules()):
            raise _WorkerUnavailable("the reward model's classes are defined in __main__, which a worker cannot import")
        if self.worker is None:
            env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()),
                   "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # fmt: skip
            try:
                self.worker = subprocess.Popen([sys.executable, "-m", "rlhflab.control.refit"], stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, env=env)  # fmt: skip
            except OSError as e:
                raise _WorkerUnavailable(f"could not start a process ({e})") from None
        try:
            data = pickle.dumps((torch.get_num_threads(), job), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError) as e:  # e.g. a lambda inside a member network
            raise _WorkerUnavailable(f"the reward model cannot be sent to another process ({e})") from None
        try:
            self.worker.stdin.write(data)
            self.worker.stdin.flush()
        except OSError as e:
            raise _WorkerUnavailable(f"the refit process did not take the job ({e})") from None

    def close(self) -> None:
        """Stop the worker: at once if it is still refitting (the loop stopped and will not take the result)."""
        if self.worker is not None:
            worker, self.worker = self.worker, None
            try:
                if self.busy:
                    worker.kill()
                worker.stdin.close()
                worker.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                worker.kill()
                worker.wait()
            worker.stdout.close()
        self.job = self.pending = None


class _WorkerUnavailable(Exception):
    pass


def _serve(source, sink) -> None:
    while True:
        try:
            threads, job = pickle.load(source)
        except EOFError:
            return
        except Exception as e:  # noqa: BLE001 - the loop runs this job itself
            pickle.dump(("unavailable", f"{type(e).__name__}: {e}"), sink)
            sink.flush()
            return
        torch.set_num_threads(threads)
        try:
            out = ("ok", refit(job))
        except BaseException:  # noqa: BLE001 - the loop's process shows it
            out = ("error", traceback.format_exc())
        try:
            pickle.dump(out, sink, protocol=pickle.HIGHEST_PROTOCOL)
            sink.flush()
        except BrokenPipeError:  # the loop is gone
            return


def _main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the loop, which stops this process
    sink = os.fdopen(os.dup(1), "wb")  # the answers; anything else printed goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _serve(sys.stdin.buffer, sink)


if __name__ == "__main__":  # run as the package's module, so that what it sends unpickles as rlhflab's classes
    from rlhflab.control.refit import _main as main

    main()
