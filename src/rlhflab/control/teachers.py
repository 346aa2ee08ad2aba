"""Simulated teachers of trajectory segments: B-Pref's irrational teachers (Lee et al. 2021).

A teacher compares two segments by the returns it perceives. What it perceives is a per-step
reward computed when the segment was recorded (``Segment.perceived``): the environment's own
reward for a teacher who sees everything, or a function of a *view* of the state (a camera
projection, some coordinates) for one who does not. Gold is always the environment's reward.

With perceived per-step rewards ``r`` of length ``H`` the teacher:

- discounts myopically: ``R = sum_t gamma^(H-1-t) r_t`` (``gamma = 1``: every step counts; small
  ``gamma``: the end of the clip counts most);
- skips the query when neither segment is worth judging: ``max(R_a, R_b) < skip_below``;
- calls it equal when ``|R_a - R_b| < equal_within`` (label 0.5);
- else prefers ``a`` with ``P = sigmoid(beta (R_a - R_b))`` (``beta = None``: always the better);
- then makes a mistake (flips its answer) with probability ``mistake``, and answers uniformly at
  random with probability ``random_rate`` (Christiano et al. 2017 assume 10%).

B-Pref's thresholds are given relative to the average return of a segment; here they are
absolute, in the perceived reward's own units, so a run records exactly what the teacher did.
Everything is a pure function of arrays and a generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhflab.core.config import check

SKIP = -1.0
"""The label of a skipped query (no comparison is recorded)."""


@dataclass(frozen=True)
class Teacher:
    beta: float | None = None
    """Rationality: P(a > b) = sigmoid(beta (R_a - R_b)); none (the default) always picks the higher return, 0 is a
    coin."""
    gamma: float = 1.0
    """Myopic discount: step t of an H-step segment weighs gamma^(H-1-t) (1: all steps equally)."""
    mistake: float = 0.0
    """Probability of flipping the answer (B-Pref's epsilon)."""
    random_rate: float = 0.1
    """Share of answers given uniformly at random (Christiano et al. 2017 assume 0.1)."""
    skip_below: float | None = None
    """Skip the query when both segments' perceived returns are below this (none: never skip)."""
    equal_within: float = 0.0
    """Call the segments equal (label 0.5) when their perceived returns differ by less than this."""
    name: str = "teacher"
    """Written to each comparison's source as ``simulated:<name>``."""

    def __post_init__(self) -> None:
        check(
            self.beta is None or self.beta >= 0, "teacher_beta", self.beta, ">= 0 (none: a perfectly rational teacher)"
        )
        check(0 < self.gamma <= 1, "teacher_gamma", self.gamma, "in (0, 1]")
        check(0 <= self.mistake <= 1, "teacher_mistake", self.mistake, "in [0, 1]")
        check(0 <= self.random_rate <= 1, "teacher_random_rate", self.random_rate, "in [0, 1]")
        check(self.equal_within >= 0, "teacher_equal_within", self.equal_within, ">= 0")

    def returns(self, perceived: np.ndarray) -> np.ndarray:
        """Discounted perceived returns of segments: ``perceived`` is [N, H] per-step rewards -> [N]."""
        perceived = np.asarray(perceived, dtype=np.float64)
        weights = self.gamma ** np.arange(perceived.shape[-1] - 1, -1, -1, dtype=np.float64)
        return perceived @ weights

    def probability(self, r_a: np.ndarray, r_b: np.ndarray) -> np.ndarray:
        """P(the teacher says a) for returns ``r_a``, ``r_b`` (before skips and equal calls)."""
        diff = np.asarray(r_a, dtype=np.float64) - np.asarray(r_b, dtype=np.float64)
        if self.beta is None:
            p = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
        else:
            p = 0.5 * (1 + np.tanh(0.5 * self.beta * diff))  # sigmoid, without overflow
        p = self.mistake * (1 - p) + (1 - self.mistake) * p
        return self.random_rate * 0.5 + (1 - self.random_rate) * p

    def label(self, perceived_a: np.ndarray, perceived_b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Labels of N queries from their segments' perceived rewards ([N, H] each): 1 (a preferred), 0 (b),
        0.5 (equal) or ``SKIP``."""
        r_a, r_b = self.returns(perceived_a), self.returns(perceived_b)
        p = self.probability(r_a, r_b)
        labels = (rng.random(len(p)) < p).astype(np.float64)
        labels[np.abs(r_a - r_b) < self.equal_within] = 0.5
        if self.skip_below is not None:
            labels[np.maximum(r_a, r_b) < self.skip_below] = SKIP
        return labels

    # The loop's interface to a teacher; a teacher of people (``rlhflab.control.people.People``) has the same.

    late_answers = False
    """Whether answers can arrive after the round that asked (then the loop also collects when it asks nothing)."""

    def ask(self, bank, pairs: np.ndarray, rng: np.random.Generator, round_: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels of ``pairs`` ([N, 2] indices into the ``SegmentBank`` ``bank``) from their perceived rewards, as
        (pairs, labels)."""
        return pairs, self.label(bank.perceived[pairs[:, 0]], bank.perceived[pairs[:, 1]], rng)

    def state(self) -> dict | None:
        """What a round checkpoint keeps of the teacher (a simulated one keeps nothing: its randomness is the
        loop's)."""
        return None

    def restore(self, state: dict | None) -> None:
        """Continue from a checkpoint's ``state()``."""
