"""Queries between two clips (videos of trajectory segments), in the same store as text queries.

A clip query is an ordinary row of ``queries`` (so serving, leases, answers, undo, tokens and agreement
statistics are the text queries' own) whose ``origin`` starts with ``clips:`` and whose prompt, a and b
are captions; the ``clips`` table holds its two videos and the segments they show, as opaque bytes
the caller wrote (the control loop writes the segments' arrays, so an answer can be turned into a
comparison even by a run that was restarted and no longer holds those segments in memory).

The page fetches a video with the labeller's token (``GET /api/clip/<query>/<a|b>``) and plays it
from a blob URL: a video is only given to a labeller the query was served to.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from rlhflab.core.errors import RlhflabError
from rlhflab.feedback.label.store import CLIP_ORIGIN, LabelError, Labeller, LabelStore, served_at

MIME = "video/mp4"
MAX_VIDEO = 8 * 1024 * 1024
"""Bytes of one clip; larger videos are refused when queued (a 2-s clip at 128 px is a few KB)."""


@dataclass(frozen=True)
class ClipAnswer:
    answer_id: int
    query_id: int
    choice: str
    """a, b, tie or skip."""
    labeller: str
    segments: bytes
    """What the caller stored with the query."""


class ClipQueue:
    """Clip queries of one run directory's label store."""

    def __init__(self, store: LabelStore, source: str):
        if not source or ":" in source:
            raise RlhflabError(f"a clip queue needs a source name without ':', got {source!r}")
        self.store, self.origin = store, CLIP_ORIGIN + source

    def put(self, rows: Iterable[dict]) -> list[int]:
        """Queue clip pairs; each row has ``caption``, ``video_a``, ``video_b`` (MP4 bytes), ``segments`` (bytes)
        and optionally ``gold_a``, ``gold_b``, ``priority``. Returns the new query ids; nothing is queued if any row
        is bad."""
        rows = list(rows)
        for i, r in enumerate(rows, 1):
            for key in ("video_a", "video_b", "segments"):
                if not isinstance(r.get(key), bytes) or not r[key]:
                    raise RlhflabError(f"clip query {i}: {key} must be non-empty bytes")
            for key in ("video_a", "video_b"):
                if len(r[key]) > MAX_VIDEO:
                    raise RlhflabError(f"clip query {i}: {key} is {len(r[key])} bytes, more than {MAX_VIDEO}")
        ids = []
        with self.store._write() as db:
            for r in rows:
                cursor = db.execute(
                    "INSERT INTO queries (prompt, a, b, shared, priority, gold_a, gold_b, origin, created) "
                    "VALUES (?, 'clip A', 'clip B', 0, ?, ?, ?, ?, ?)",
                    (str(r.get("caption", "")), float(r.get("priority", 0.0)), r.get("gold_a"), r.get("gold_b"),
                     self.origin, time.time()),
                )  # fmt: skip
                ids.append(int(cursor.lastrowid))
                db.execute(
                    "INSERT INTO clips (query_id, mime, video_a, video_b, segments) VALUES (?, ?, ?, ?, ?)",
                    (ids[-1], MIME, r["video_a"], r["video_b"], r["segments"]),
                )
        return ids

    def answers(self, after: int = 0) -> list[ClipAnswer]:
        """Answers to this queue's clip queries with an answer id above ``after``, oldest first."""
        with self.store._connect() as db:
            rows = db.execute(
                "SELECT a.id, a.query_id, a.choice, l.name, c.segments FROM answers a "
                "JOIN queries q ON q.id = a.query_id JOIN clips c ON c.query_id = a.query_id "
                "JOIN labellers l ON l.id = a.labeller_id WHERE q.origin = ? AND a.id > ? ORDER BY a.id",
                (self.origin, after),
            ).fetchall()
        return [ClipAnswer(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def unanswered(self, query_ids: Iterable[int]) -> int:
        """How many of ``query_ids`` nobody has answered yet."""
        ids = list(query_ids)
        if not ids:
            return 0
        with self.store._connect() as db:
            marks = ",".join("?" * len(ids))
            answered = db.execute(
                f"SELECT COUNT(DISTINCT query_id) FROM answers WHERE query_id IN ({marks})", ids
            ).fetchone()[0]
        return len(ids) - answered


def clip_video(store: LabelStore, labeller: Labeller, query_id: int, side: str) -> tuple[bytes, str]:
    """The video of side ``a`` or ``b`` of a clip query served to ``labeller``, and its MIME type."""
    if side not in ("a", "b"):
        raise LabelError(404, f"a clip query has sides a and b, not {side!r}")
    with store._connect() as db:
        row = db.execute(f"SELECT video_{side}, mime FROM clips WHERE query_id = ?", (query_id,)).fetchone()
        if row is None:
            raise LabelError(404, f"query {query_id} is not a clip query")
        served_at(db, query_id, labeller)
    return bytes(row[0]), row[1]
