"""People as the teacher: the loop's queries become pairs of clips in the labelling page.

``People.ask`` renders the two segments of each query (only the queried ones) as MP4 clips, queues
them in ``RUN/labels.sqlite`` (the store the text queries use: the same tokens, serving, undo, crash
safety and agreement statistics), and waits until they are answered or ``wait_seconds`` have passed;
``rlhflab label serve --run RUN`` is the page. Every answer given since the last call becomes a
comparison, late answers to earlier rounds' queries included: a query nobody answered in time
stays in the queue, and its answer is taken at the next round. Skips count as skips.

Each queued query carries its two segments' arrays, so an answer is a comparison even for a run
restarted from a checkpoint that no longer holds those segments: they are added to the bank again.
The answers taken so far are part of the loop's checkpoint (``state``/``restore``): a resumed run
takes again every answer the crashed one took after its last checkpoint. Nothing a person answered
is lost.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from rlhflab.control.clips import FPS, mp4_bytes, render_many
from rlhflab.control.segments import SegmentBank
from rlhflab.control.teachers import SKIP
from rlhflab.core.config import check
from rlhflab.core.errors import DataError
from rlhflab.feedback.label.clips import ClipAnswer, ClipQueue
from rlhflab.feedback.label.store import DB_NAME, LabelStore

LABEL_OF = {"a": 1.0, "b": 0.0, "tie": 0.5, "skip": SKIP}
_FIELDS = ("obs", "acts", "gold", "perceived", "states")


@dataclass
class People:
    run_dir: Path
    """The run directory: queries and answers live in RUN/labels.sqlite."""
    env: str
    """The env's id or module:factory, to render clips."""
    wait_seconds: float = 1800.0
    """How long each round waits for its queries to be answered before training on (the rest come later)."""
    poll_seconds: float = 2.0
    size: int = 128
    """Clip width and height in pixels."""
    fps: int = FPS
    taken: int = 0
    """The last answer id turned into a comparison."""
    progress: bool = True

    late_answers = True
    """A query nobody answered in time is answered later: the loop collects even when it asks nothing."""

    def __post_init__(self) -> None:
        check(self.wait_seconds >= 0, "wait", self.wait_seconds, ">= 0 seconds")
        check(self.poll_seconds > 0, "poll_seconds", self.poll_seconds, "> 0")
        self.queue = ClipQueue(LabelStore(self.run_dir), source=self.env.replace(":", "."))

    def state(self) -> dict:
        return {"taken": self.taken}

    def restore(self, state: dict | None) -> None:
        self.taken = int((state or {}).get("taken", 0))

    def ask(self, bank: SegmentBank, pairs: np.ndarray, rng, round_: int) -> tuple[np.ndarray, np.ndarray]:
        """Queue ``pairs`` (indices into ``bank``) as clips, wait for answers; every new answer as (pairs, labels)."""
        queued = self.put(bank, pairs, round_) if len(pairs) else []
        if queued:
            where = Path(self.run_dir) / DB_NAME
            tqdm.write(f"queued {len(pairs)} clip pairs in {where}: label them at 'rlhflab label serve --run "
                       f"{self.run_dir}' (waiting up to {self.wait_seconds:.0f} s)")  # fmt: skip
        self.wait(queued)
        return self.collect(bank, round_)

    def put(self, bank: SegmentBank, pairs: np.ndarray, round_: int) -> list[int]:
        flat = pairs.reshape(-1)
        frames = render_many(self.env, [bank.states[i] for i in flat], self.size)
        rows = []
        for k, (i, j) in enumerate(pairs):
            rows.append({
                "caption": f"{self.env}, round {round_}: segments {i} and {j}, {bank.gold.shape[1]} steps each",
                "video_a": mp4_bytes(frames[2 * k], self.fps),
                "video_b": mp4_bytes(frames[2 * k + 1], self.fps),
                "segments": _pack(bank, np.array([i, j])),
                "gold_a": float(bank.gold[i].sum()),
                "gold_b": float(bank.gold[j].sum()),
            })  # fmt: skip
        return self.queue.put(rows)

    def wait(self, ids: list[int]) -> None:
        deadline = time.monotonic() + self.wait_seconds
        bar = tqdm(total=len(ids), desc="waiting for people's labels", unit="label", disable=not self.progress)
        while True:
            left = self.queue.unanswered(ids)
            bar.n = len(ids) - left
            bar.refresh()
            if left == 0 or time.monotonic() >= deadline:
                break
            time.sleep(min(self.poll_seconds, max(0.0, deadline - time.monotonic())))
        bar.close()

    def collect(self, bank: SegmentBank, round_: int) -> tuple[np.ndarray, np.ndarray]:
        """Every answer after ``taken`` as comparisons; segments the bank no longer holds are added back."""
        answers = self.queue.answers(after=self.taken)
        pairs, labels = np.zeros((len(answers), 2), np.int64), np.zeros(len(answers))
        for n, answer in enumerate(answers):
            pairs[n] = [_find_or_add(bank, segment, round_) for segment in _unpack(answer, bank, self.queue.store.path)]
            labels[n] = LABEL_OF[answer.choice]
            self.taken = answer.answer_id
        return pairs, labels


def _pack(bank: SegmentBank, index: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, index=index, **{k: getattr(bank, k)[index] for k in _FIELDS})
    return buffer.getvalue()


def _unpack(answer: ClipAnswer, bank: SegmentBank, source: Path) -> list[dict]:
    """The answer's two segments, checked against the bank's shapes (one-line error naming the query)."""
    where = f"query {answer.query_id} (answer {answer.answer_id})"
    try:
        with np.load(io.BytesIO(answer.segments)) as data:
            arrays = {k: data[k] for k in ("index", *_FIELDS)}
    except Exception as e:
        raise DataError(source, f"{where}: its segments cannot be read ({type(e).__name__}); not a clip of this run")
    for k in _FIELDS:
        want = getattr(bank, k).shape[1:]
        if arrays[k].shape != (2, *want):
            raise DataError(source, f"{where}: {k} of shape {list(arrays[k].shape)}, this run's segments need "
                            f"{[2, *want]}: the labels are for segments that do not exist in this run")  # fmt: skip
    return [{"index": int(arrays["index"][s]), **{k: arrays[k][s] for k in _FIELDS}} for s in range(2)]


def _find_or_add(bank: SegmentBank, segment: dict, round_: int) -> int:
    i = segment["index"]
    if 0 <= i < len(bank) and all(np.array_equal(getattr(bank, k)[i], segment[k]) for k in ("obs", "acts")):
        return i
    bank.add(SegmentBank(*(segment[k][None] for k in _FIELDS), np.array([round_], np.int64)))
    return len(bank) - 1
