"""The labelling database: one SQLite file per run directory (``RUN/labels.sqlite``).

Write-ahead logging with ``synchronous=FULL``: an answer is acknowledged to the labeller only
after its transaction is committed and synced, so it survives a kill -9 of the server (and a
power cut). Every connection is short-lived and opened per request; writes take the database
lock at their start (``BEGIN IMMEDIATE``), so concurrent labellers are serialised, not lost.

Tables:

``labellers``  name and the SHA-256 of the access token (the token itself is printed once)
``queries``    the pairs to label: prompt, continuations a and b, ``shared`` (shown to every
               labeller, for agreement checks; the others go to one labeller each),
               ``priority`` (larger first: the disagreement score), gold scores if known
``served``     which query was shown to whom, and when (time per label is measured from it)
``answers``    one row per (query, labeller) at most: a, b, tie or skip
``clips``      for a query between two clips (``origin`` starting ``clips:``): the two videos and the
               segments they show (``rlhflab.feedback.label.clips``)
"""

from __future__ import annotations

import hashlib
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rlhflab.core.comparison import PreferencePair
from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.feedback.label.stats import CHOICES, label_stats

DB_NAME = "labels.sqlite"
CLIP_ORIGIN = "clips:"
"""The ``origin`` of a query between two clips (its prompt, a and b are captions; the videos are in ``clips``)."""
MAX_TEXT = 20_000
"""Characters of a prompt or continuation; longer texts are refused when queued."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labellers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY,
    prompt TEXT NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    shared INTEGER NOT NULL DEFAULT 0,
    priority REAL NOT NULL DEFAULT 0,
    gold_a REAL,
    gold_b REAL,
    origin TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queries_order ON queries (priority DESC, id);
CREATE TABLE IF NOT EXISTS served (
    query_id INTEGER NOT NULL REFERENCES queries (id),
    labeller_id INTEGER NOT NULL REFERENCES labellers (id),
    at REAL NOT NULL,
    PRIMARY KEY (query_id, labeller_id)
);
CREATE INDEX IF NOT EXISTS served_by_query ON served (query_id);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    query_id INTEGER NOT NULL REFERENCES queries (id),
    labeller_id INTEGER NOT NULL REFERENCES labellers (id),
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'skip')),
    seconds REAL,
    at REAL NOT NULL,
    UNIQUE (query_id, labeller_id)
);
CREATE TABLE IF NOT EXISTS clips (
    query_id INTEGER PRIMARY KEY REFERENCES queries (id),
    mime TEXT NOT NULL,
    video_a BLOB NOT NULL,
    video_b BLOB NOT NULL,
    segments BLOB NOT NULL
);
"""


class LabelError(RlhflabError):
    """A request the store refuses; ``status`` is the HTTP status the server answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Labeller:
    id: int
    name: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LabelStore:
    """All reads and writes of ``RUN/labels.sqlite``. Safe to use from many threads and processes."""

    def __init__(self, run_dir: str | Path, lease_seconds: float = 600.0):
        self.path = Path(run_dir) / DB_NAME
        self.lease_seconds = lease_seconds
        # writers of this process queue here rather than in SQLite's busy handler, whose
        # sleep-and-retry backoff gives long tail latencies under many concurrent labellers
        self._lock = threading.Lock()
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.row_factory = sqlite3.Row
        return db

    def _write(self, durable: bool = True):
        """A write transaction; ``durable=False`` skips the fsync at commit (the write still survives a
        crash of the server, not of the machine): for bookkeeping that is harmless to lose."""
        db = self._connect()
        if not durable:
            db.execute("PRAGMA synchronous=NORMAL")
        return _Transaction(db, self._lock)

    # ------------------------------------------------------------------ labellers

    def add_labeller(self, name: str) -> str:
        """Create a labeller; return the access token (only its hash is stored)."""
        name = name.strip()
        if not name or len(name) > 64 or any(c in name for c in ":\n\r\t"):
            raise RlhflabError(f"labeller name {name!r}: use 1-64 characters, no ':' or whitespace other than spaces")
        token = secrets.token_urlsafe(24)
        with self._write() as db:
            if db.execute("SELECT 1 FROM labellers WHERE name = ?", (name,)).fetchone():
                raise RlhflabError(f"a labeller named {name!r} already exists in {self.path}")
            db.execute(
                "INSERT INTO labellers (name, token_sha256, created) VALUES (?, ?, ?)",
                (name, token_hash(token), time.time()),
            )
        return token

    def authenticate(self, token: str | None) -> Labeller | None:
        if not token:
            return None
        with self._connect() as db:
            row = db.execute("SELECT id, name FROM labellers WHERE token_sha256 = ?", (token_hash(token),)).fetchone()
        return Labeller(row["id"], row["name"]) if row else None

    # ------------------------------------------------------------------ the query queue

    def add_queries(self, rows: Iterable[dict], shared_fraction: float = 0.0, seed: int = 0, origin: str = "") -> int:
        """Queue pairs to label. Each row has ``prompt``, ``a``, ``b`` and optionally ``gold_a``,
        ``gold_b`` and ``priority``. A ``shared_fraction`` of them (chosen with ``seed``) is shown
        to every labeller. Returns the number queued; nothing is queued if any row is bad."""
        if not 0 <= shared_fraction <= 1:
            raise RlhflabError(f"--overlap must be in [0, 1], got {shared_fraction}")
        rows = list(rows)
        for i, r in enumerate(rows, 1):
            for key in ("prompt", "a", "b"):
                if not isinstance(r.get(key), str):
                    raise DataError(origin or "queries", f"{key!r} must be a string", line=i, field=key)
                if len(r[key]) > MAX_TEXT:
                    raise DataError(
                        origin or "queries", f"{len(r[key])} characters, more than {MAX_TEXT}", line=i, field=key
                    )
            if not r["a"].strip() or not r["b"].strip():
                raise DataError(origin or "queries", "empty continuation", line=i)
            if r["a"] == r["b"]:
                raise DataError(origin or "queries", "the two continuations are identical", line=i)
        rng = random.Random(seed)
        shared = set(rng.sample(range(len(rows)), round(shared_fraction * len(rows)))) if rows else set()
        now = time.time()
        with self._write() as db:
            db.executemany(
                "INSERT INTO queries (prompt, a, b, shared, priority, gold_a, gold_b, origin, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r["prompt"],
                        r["a"],
                        r["b"],
                        int(i in shared),
                        float(r.get("priority", 0.0)),
                        r.get("gold_a"),
                        r.get("gold_b"),
                        origin,
                        now,
                    )
                    for i, r in enumerate(rows)
                ],
            )
        return len(rows)

    def next_query(self, labeller: Labeller) -> dict | None:
        """The query to show ``labeller``: one shown to them and not answered yet, else the next one
        nobody else holds (highest priority first); ``None`` when there is nothing left for them."""
        with self._write(durable=False) as db:  # losing who-was-shown-what in a power cut costs nothing
            row = db.execute(
                "SELECT q.* FROM served s JOIN queries q ON q.id = s.query_id "
                "WHERE s.labeller_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM answers x WHERE x.query_id = s.query_id AND x.labeller_id = s.labeller_id) "
                "ORDER BY s.at, s.query_id LIMIT 1",
                (labeller.id,),
            ).fetchone()
            if row is None:
                stale = time.time() - self.lease_seconds
                row = db.execute(
                    "SELECT q.* FROM queries q WHERE NOT EXISTS "
                    "  (SELECT 1 FROM served s WHERE s.query_id = q.id AND s.labeller_id = :me) "
                    "AND (q.shared = 1 OR NOT EXISTS "
                    "  (SELECT 1 FROM served s LEFT JOIN answers x "
                    "   ON x.query_id = s.query_id AND x.labeller_id = s.labeller_id "
                    "   WHERE s.query_id = q.id AND s.labeller_id != :me AND "
                    "   (x.choice IN ('a', 'b', 'tie') OR (x.id IS NULL AND s.at > :stale)))) "
                    "ORDER BY q.priority DESC, q.id LIMIT 1",
                    {"me": labeller.id, "stale": stale},
                ).fetchone()
                if row is None:
                    return None
                db.execute(
                    "INSERT INTO served (query_id, labeller_id, at) VALUES (?, ?, ?)",
                    (row["id"], labeller.id, time.time()),
                )
        return _shown(row)

    def answer(self, labeller: Labeller, query_id: int, choice: str) -> int:
        """Record an answer; returns its id once it is committed to disk."""
        if choice not in CHOICES:
            raise LabelError(422, f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        with self._write() as db:
            if db.execute("SELECT 1 FROM queries WHERE id = ?", (query_id,)).fetchone() is None:
                raise LabelError(404, f"there is no query {query_id}")
            served = served_at(db, query_id, labeller)
            done = db.execute(
                "SELECT id FROM answers WHERE query_id = ? AND labeller_id = ?", (query_id, labeller.id)
            ).fetchone()
            if done is not None:
                raise LabelError(409, f"query {query_id} is already answered (answer {done['id']}); undo to change it")
            now = time.time()
            cursor = db.execute(
                "INSERT INTO answers (query_id, labeller_id, choice, seconds, at) VALUES (?, ?, ?, ?, ?)",
                (query_id, labeller.id, choice, now - served, now),
            )
            return int(cursor.lastrowid)

    def undo(self, labeller: Labeller) -> dict | None:
        """Delete the labeller's latest answer; return its query (to show again), or None if none."""
        with self._write() as db:
            row = db.execute(
                "SELECT a.id, a.query_id FROM answers a WHERE a.labeller_id = ? ORDER BY a.id DESC LIMIT 1",
                (labeller.id,),
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM answers WHERE id = ?", (row["id"],))
            # shown again now: the time to answer is measured from here
            db.execute(
                "UPDATE served SET at = ? WHERE query_id = ? AND labeller_id = ?",
                (time.time(), row["query_id"], labeller.id),
            )
            return _shown(db.execute("SELECT * FROM queries WHERE id = ?", (row["query_id"],)).fetchone())

    def progress(self, labeller: Labeller) -> dict:
        with self._connect() as db:
            mine = db.execute("SELECT COUNT(*) FROM answers WHERE labeller_id = ?", (labeller.id,)).fetchone()[0]
            total = db.execute("SELECT COUNT(*) FROM queries").fetchone()[0]
            answered = db.execute("SELECT COUNT(DISTINCT query_id) FROM answers").fetchone()[0]
        return {"yours": mine, "answered": answered, "queued": total}

    # ------------------------------------------------------------------ reading the labels

    def answers(self) -> list[dict]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT a.id, a.query_id, a.choice, a.seconds, a.at, l.name AS labeller, q.prompt, q.a, q.b, "
                "q.shared, q.gold_a, q.gold_b, q.origin FROM answers a JOIN labellers l ON l.id = a.labeller_id "
                "JOIN queries q ON q.id = a.query_id ORDER BY a.id"
            ).fetchall()
        return [dict(r) for r in rows]

    def export_pairs(self) -> list[PreferencePair]:
        """Every answer except skips and answers about clips as a PreferencePair (``source=human:<labeller>``);
        a tie keeps the order shown, with label 0.5."""
        out = []
        for r in self.answers():
            if r["choice"] == "skip" or r["origin"].startswith(CLIP_ORIGIN):
                continue
            first_wins = r["choice"] in ("a", "tie")
            chosen, rejected = (r["a"], r["b"]) if first_wins else (r["b"], r["a"])
            scores = {}
            if r["gold_a"] is not None and r["gold_b"] is not None:
                ga, gb = (r["gold_a"], r["gold_b"]) if first_wins else (r["gold_b"], r["gold_a"])
                scores = {"gold_chosen": ga, "gold_rejected": gb}
            out.append(
                PreferencePair(
                    prompt=r["prompt"],
                    chosen=chosen,
                    rejected=rejected,
                    label=0.5 if r["choice"] == "tie" else 1.0,
                    source=f"human:{r['labeller']}",
                    scores=scores,
                )
            )
        return out

    def stats(self) -> dict:
        return label_stats(self.answers(), self._count("queries"), self._count("labellers"))

    def _count(self, table: str) -> int:
        with self._connect() as db:
            return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def served_at(db: sqlite3.Connection, query_id: int, labeller: Labeller) -> float:
    """When ``query_id`` was shown to ``labeller``; a 409 if it never was."""
    row = db.execute("SELECT at FROM served WHERE query_id = ? AND labeller_id = ?", (query_id, labeller.id)).fetchone()
    if row is None:
        raise LabelError(409, f"query {query_id} was not given to you; ask for the next query")
    return float(row["at"])


def _shown(row: sqlite3.Row) -> dict:
    """A queries row as the page gets it."""
    clip = row["origin"].startswith(CLIP_ORIGIN)
    return {"query_id": row["id"], "prompt": row["prompt"], "a": row["a"], "b": row["b"], "clip": clip}


class _Transaction:
    """Under ``lock``: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on an exception), then close."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            self.db.close()
            raise
        return self.db

    def __exit__(self, kind, value, tb) -> None:
        try:
            self.db.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self.lock.release()
            self.db.close()
