"""Reading and writing the project's files: atomic writes, whole-line appends, strict reading.

Every writer replaces its file atomically (a temporary name in the same folder, fsync, rename,
and the temporary file removed if anything fails), so an interrupted command leaves each file
as it was or complete. Every reader names the file, the line and what is wrong: text that is
not UTF-8, JSON that is not valid, numbers JSON does not have (NaN, Infinity, and literals such
as 1e400 that only a float's infinity could hold) and strings with unpaired surrogates (which
could not be written back as UTF-8).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

from rlhflab.core.errors import DataError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def csv_text(
    rows: Sequence[dict], columns: Sequence[str] | None = None, float_format: str | None = None, newline: str = "\r\n"
) -> str:
    """``rows`` as CSV with a header line. Without ``columns``: the first row's keys, in their order (a row
    with another key: ValueError; a row without one: an empty cell). With ``columns``: those, in that order,
    every row's other keys left out (a row without one: KeyError). Floats as ``str`` writes them, or with
    ``float_format`` (such as ``".6g"``); None as an empty cell; lines end with ``newline`` (by default CRLF,
    as the csv module ends them)."""
    buf = io.StringIO()
    fields = list(rows[0].keys()) if columns is None else list(columns)
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator=newline)
    writer.writeheader()
    for r in rows:
        if columns is not None:
            r = {k: r[k] for k in fields}
        if float_format is not None:
            r = {k: format(v, float_format) if isinstance(v, float) else v for k, v in r.items()}
        writer.writerow(r)
    return buf.getvalue()


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished directory into place, replacing any older one."""
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None: what rlhflab writes for itself (manifests,
    metric logs) is always valid JSON, so the strict reader that refuses NaN in inputs reads it back."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final`` to fill; on success it replaces ``final`` at once, and on
    failure it is removed (``final`` stays as it was)."""
    final = Path(final)
    tmp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def append_jsonl(path: str | Path, obj: dict[str, Any]) -> None:
    """Append one line in a single write, so a crash leaves whole lines only (NaN written as null)."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(strict_json(obj), ensure_ascii=False, default=float) + "\n")
        f.flush()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    x = float(literal)
    if math.isinf(x):
        raise ValueError(f"{literal[:40]} is too large for a number (it would be infinity)")
    return x


def loads(text: str, allow_nan: bool = False) -> Any:
    """``json.loads`` that refuses NaN/Infinity (spelled out or overflowing) and strings that are not valid Unicode.

    ``allow_nan`` accepts NaN and Infinity, for the files rlhflab writes with them (statistics of empty
    sets in ``diagnostics.json``)."""
    if allow_nan:
        obj = json.loads(text)
    else:
        obj = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    json.dumps(obj, ensure_ascii=False).encode("utf-8")  # raises on an unpaired surrogate
    return obj


def _problem(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON ({e.msg}, column {e.colno})"
    if isinstance(e, UnicodeEncodeError):
        return "a string holds an unpaired surrogate (\\ud800-\\udfff), which is not text"
    return f"not valid JSON ({e})"


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; a clear error if it is missing, a folder, or not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"no such {what}" if not path.exists() else "not a file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(path, f"not UTF-8 text ({e.reason} at byte {e.start})", line) from None


def read_json(path: str | Path, what: str = "file", allow_nan: bool = False) -> Any:
    """A JSON file, strictly (see ``loads``)."""
    text = read_text(path, what)
    try:
        return loads(text, allow_nan)
    except (ValueError, UnicodeEncodeError) as e:
        line = e.lineno if isinstance(e, json.JSONDecodeError) else None
        raise DataError(path, _problem(e), line) from None


def iter_jsonl(path: str | Path, what: str = "file", tolerate_cut_last_line: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, object) for each non-blank line of a JSONL file.

    ``tolerate_cut_last_line`` skips an unterminated last line that does not parse (an append
    cut short by a crash); any other bad line is an error naming the file and line.
    """
    text = read_text(path, what)
    lines = text.split("\n")
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield i, loads(line)
        except (ValueError, UnicodeEncodeError) as e:
            if tolerate_cut_last_line and i == len(lines):
                return
            hint = ""
            if i == 1 and line.lstrip().startswith("["):
                hint = "; the file looks like one JSON array, expected JSONL: one object per line"
            raise DataError(path, _problem(e) + hint, i) from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL log; a last line cut short by a crash is ignored, any other bad line is an error."""
    return [row for _, row in iter_jsonl(path, tolerate_cut_last_line=True)]


def truncate_jsonl(path: str | Path, keep: int) -> None:
    """Keep the first ``keep`` rows (on resume, drop the rows written after the checkpoint)."""
    path = Path(path)
    if path.exists():
        atomic_write_text(path, jsonl_text(read_jsonl(path)[:keep]))


def keep_until_step(path: str | Path, step: int) -> None:
    """Keep the rows whose "step" is at most ``step`` (on resume)."""
    path = Path(path)
    if path.exists():
        atomic_write_text(path, jsonl_text([r for r in read_jsonl(path) if r.get("step", 0) <= step]))
