"""Load and crash test of the labelling server on loopback.

Starts ``rlhflab label serve`` on a fresh run directory holding ``--answers`` queued pairs and
``--labellers`` labellers; each labeller is a thread that asks for its next pair and answers it,
until the pairs run out. Reports the p50/p99 latency of answer requests (and of next-pair
requests), and checks the database: every acknowledged answer is there, none is duplicated
(no labeller answered a pair twice, no pair was answered by two labellers).

With ``--crash``, the server is killed with SIGKILL when half the answers are acknowledged,
restarted, and the labellers carry on; the same checks then prove that nothing acknowledged
was lost.

    .venv/bin/python bench/bench_label_load.py [--labellers 20] [--answers 2000] [--crash] [--json out.json]

Timings are measured, not asserted: no test depends on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from labelserver import Server  # noqa: E402

from rlhflab.feedback.label.store import LabelStore  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labellers", type=int, default=20)
    p.add_argument("--answers", type=int, default=2000, help="Pairs queued = answers expected in total.")
    p.add_argument("--crash", action="store_true", help="kill -9 the server half-way and restart it")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    run = Path(tempfile.mkdtemp(prefix="rlhflab-load-")) / "run"
    store = LabelStore(run)
    store.add_queries(
        {"prompt": f"prompt {i}", "a": f" continuation a of {i}", "b": f" continuation b of {i}"}
        for i in range(args.answers)
    )
    tokens = [store.add_labeller(f"labeller{i:02d}") for i in range(args.labellers)]
    server = Server(run)
    lock = threading.Lock()
    acked: list[tuple[str, int, int]] = []
    latency = {"next": [], "answer": []}
    errors: list[str] = []
    restarted = threading.Event()
    crash_at = args.answers // 2 if args.crash else None

    def labeller(token: str) -> None:
        rng_choice = ("a", "b", "tie")
        k = 0
        while True:
            try:
                t0 = time.perf_counter()
                status, body = server.request("GET", "/api/next", token=token)
                t1 = time.perf_counter()
                if status != 200:
                    errors.append(f"next: {status} {body}")
                    return
                if body["query"] is None:
                    return
                qid = body["query"]["query_id"]
                status, body = server.request(
                    "POST", "/api/answer", {"query_id": qid, "choice": rng_choice[k % 3]}, token=token
                )
                t2 = time.perf_counter()
            except OSError:  # the server is down (crash test): wait for the restart and carry on
                restarted.wait(120)
                time.sleep(0.05)
                continue
            k += 1
            with lock:
                latency["next"].append(t1 - t0)
                if status == 200:
                    latency["answer"].append(t2 - t1)
                    acked.append((token, qid, body["answer_id"]))
                elif status != 409:  # 409: answered before the crash, acknowledgement lost with it
                    errors.append(f"answer: {status} {body}")

    threads = [threading.Thread(target=labeller, args=(t,), daemon=True) for t in tokens]
    started = time.perf_counter()
    for t in threads:
        t.start()
    crashed_with = None
    if crash_at is not None:
        while len(acked) < crash_at and any(t.is_alive() for t in threads):
            time.sleep(0.005)
        server.kill()
        crashed_with = len(acked)
        print(f"killed the server (SIGKILL) with {crashed_with} answers acknowledged; restarting")
        server = Server(run, port=server.port)
        restarted.set()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    server.stop()

    rows = store.answers()
    in_db = {r["id"] for r in rows}
    lost = [a for a in acked if a[2] not in in_db]
    per_labeller = [(r["query_id"], r["labeller"]) for r in rows]
    per_query = [r["query_id"] for r in rows]
    result = {
        "labellers": args.labellers,
        "queued": args.answers,
        "acknowledged": len(acked),
        "in_database": len(rows),
        "lost": len(lost),
        "duplicated_by_labeller": len(per_labeller) - len(set(per_labeller)),
        "answered_twice": len(per_query) - len(set(per_query)),
        "errors": errors[:5],
        "crash_after_acknowledged": crashed_with,
        "seconds": round(seconds, 2),
        "answers_per_second": round(len(rows) / seconds, 1),
        "answer_p50_ms": round(1000 * percentile(latency["answer"], 50), 1),
        "answer_p99_ms": round(1000 * percentile(latency["answer"], 99), 1),
        "next_p50_ms": round(1000 * percentile(latency["next"], 50), 1),
        "next_p99_ms": round(1000 * percentile(latency["next"], 99), 1),
    }
    for key, value in result.items():
        print(f"{key:26} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = not lost and not result["duplicated_by_labeller"] and not result["answered_twice"] and not errors
    ok = ok and len(rows) == args.answers
    print("OK: every acknowledged answer is stored, none twice" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
