"""The labelling store, its HTTP server (bad input, crash safety) and the query queue."""

import json
import threading
import time

import pytest
import torch
from clirun import rlhflab
from labelserver import Server

from rlhflab.core.comparison import read_pairs
from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.feedback.label.queries import preference_variance, select_by_disagreement
from rlhflab.feedback.label.stats import label_stats
from rlhflab.feedback.label.store import LabelStore


def rows(n, gold=True):
    out = []
    for i in range(n):
        row = {"prompt": f"prompt {i}", "a": f" first {i}", "b": f" second {i}"}
        if gold:
            row.update(gold_a=float(i), gold_b=0.5)
        out.append(row)
    return out


@pytest.fixture()
def store(tmp_path):
    s = LabelStore(tmp_path / "run")
    s.add_queries(rows(6), shared_fraction=0.0)
    return s


def labeller(store, name):
    token = store.add_labeller(name)
    return store.authenticate(token)


# ---------------------------------------------------------------- the store


def test_each_query_goes_to_one_labeller_and_none_twice(store):
    ann, bob = labeller(store, "ann"), labeller(store, "bob")
    seen = {"ann": [], "bob": []}
    for _ in range(3):
        for who in (ann, bob):
            q = store.next_query(who)
            seen[who.name].append(q["query_id"])
            store.answer(who, q["query_id"], "a")
    assert sorted(seen["ann"] + seen["bob"]) == [1, 2, 3, 4, 5, 6]
    assert store.next_query(ann) is None and store.next_query(bob) is None
    with pytest.raises(RlhflabError, match="already answered"):
        store.answer(ann, seen["ann"][0], "b")
    with pytest.raises(RlhflabError, match="not given to you"):
        store.answer(ann, seen["bob"][0], "b")
    with pytest.raises(RlhflabError, match="no query 99"):
        store.answer(ann, 99, "b")


def test_shared_queries_reach_every_labeller(tmp_path):
    s = LabelStore(tmp_path / "run")
    s.add_queries(rows(10), shared_fraction=0.3, seed=1)
    people = [labeller(s, n) for n in ("ann", "bob", "cy")]
    answered = {p.name: [] for p in people}
    while True:
        progressed = False
        for p in people:
            q = s.next_query(p)
            if q is not None:
                s.answer(p, q["query_id"], "a")
                answered[p.name].append(q["query_id"])
                progressed = True
        if not progressed:
            break
    counts = {}
    for ids in answered.values():
        assert len(ids) == len(set(ids))  # nobody labels a query twice
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
    assert sorted(counts) == list(range(1, 11))
    assert sorted(counts.values()) == [1] * 7 + [3] * 3


def test_a_query_left_open_is_reassigned_after_its_lease(tmp_path):
    s = LabelStore(tmp_path / "run", lease_seconds=0.2)
    s.add_queries(rows(1))
    ann, bob = labeller(s, "ann"), labeller(s, "bob")
    assert s.next_query(ann)["query_id"] == 1
    assert s.next_query(bob) is None  # ann holds it
    time.sleep(0.3)
    assert s.next_query(bob)["query_id"] == 1
    s.answer(bob, 1, "b")
    s.answer(ann, 1, "a")  # ann's late answer still counts: it was given to her
    assert len(s.answers()) == 2


def test_a_skipped_query_goes_to_someone_else(store):
    ann, bob = labeller(store, "ann"), labeller(store, "bob")
    q = store.next_query(ann)
    store.answer(ann, q["query_id"], "skip")
    assert store.next_query(bob)["query_id"] == q["query_id"]


def test_undo_deletes_the_last_answer_and_shows_its_query_again(store):
    ann = labeller(store, "ann")
    first = store.next_query(ann)["query_id"]
    store.answer(ann, first, "a")
    second = store.next_query(ann)["query_id"]
    store.answer(ann, second, "b")
    third = store.next_query(ann)["query_id"]  # shown, not answered
    assert store.undo(ann)["query_id"] == second
    store.answer(ann, second, "tie")
    assert store.next_query(ann)["query_id"] == third  # the one on screen before the undo
    assert [(r["query_id"], r["choice"]) for r in store.answers()] == [(first, "a"), (second, "tie")]
    assert store.undo(ann)["query_id"] == second and store.undo(ann)["query_id"] == first
    assert store.undo(ann) is None


def test_export_maps_choices_to_pairs(store, tmp_path):
    ann = labeller(store, "ann")
    for choice in ("a", "b", "tie", "skip"):
        store.answer(ann, store.next_query(ann)["query_id"], choice)
    pairs = store.export_pairs()
    assert [(p.chosen, p.rejected, p.label) for p in pairs] == [
        (" first 0", " second 0", 1.0),
        (" second 1", " first 1", 1.0),
        (" first 2", " second 2", 0.5),
    ]
    assert {p.source for p in pairs} == {"human:ann"}
    # gold scores follow the chosen/rejected order (second query: gold_a = 1, gold_b = 0.5, b chosen)
    assert pairs[1].scores == {"gold_chosen": 0.5, "gold_rejected": 1.0}


def test_bad_queries_queue_nothing(tmp_path):
    s = LabelStore(tmp_path / "run")
    bad = rows(3)
    bad[2]["b"] = bad[2]["a"]
    with pytest.raises(DataError, match="line 3.*identical"):
        s.add_queries(bad)
    long = rows(2)
    long[1]["a"] = "x" * 20_001
    with pytest.raises(DataError, match="20001 characters"):
        s.add_queries(long)
    assert s.stats()["queued"] == 0
    s.add_labeller("ann")
    with pytest.raises(RlhflabError, match="already exists"):
        s.add_labeller("ann")
    with pytest.raises(RlhflabError, match="labeller name"):
        s.add_labeller("a:b")


def test_stats_by_hand():
    def ans(q, who, choice, ga=None, gb=None, seconds=2.0):
        return {"query_id": q, "labeller": who, "choice": choice, "seconds": seconds, "gold_a": ga, "gold_b": gb}

    answers = [
        ans(1, "ann", "a", 1.0, 0.0),  # agrees with gold
        ans(1, "bob", "a", 1.0, 0.0, 4.0),  # agrees with gold, agrees with ann
        ans(2, "ann", "b", 1.0, 0.0),  # disagrees with gold
        ans(2, "bob", "a", 1.0, 0.0),  # disagrees with ann
        ans(2, "cy", "skip"),  # left out of agreement
        ans(3, "cy", "tie", 0.5, 0.5),  # ties: not a gold comparison
    ]
    s = label_stats(answers, queued=5, labellers=3)
    assert s["agreement"] == pytest.approx(1 / 2) and s["agreement_pairs"] == 2
    assert s["gold_agreement"] == pytest.approx(3 / 4) and s["gold_answers"] == 4
    assert s["by_labeller"]["bob"]["median_seconds"] == 3.0
    assert s["by_labeller"]["cy"] == {"a": 0, "b": 0, "tie": 1, "skip": 1, "answers": 2, "median_seconds": 2.0}


# ---------------------------------------------------------------- query selection


def test_preference_variance_by_hand():
    # member 1 is sure a wins (sigmoid(large) ~ 1), member 2 is sure b wins: variance 1/4
    a = torch.tensor([[20.0, 0.0], [-20.0, 1.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    v = preference_variance(a, b)
    assert v[0] == pytest.approx(0.25, abs=1e-6) and v[1] == pytest.approx(0.0)
    # invariant to a shift common to both continuations of a member
    assert torch.allclose(preference_variance(a + 3, b + 3), v)


def test_disagreement_picks_the_pairs_members_disagree_on():
    class Ensemble:
        members = [0, 1]

        def member_scores(self, prompts, completions):
            # member 0 likes "x", member 1 likes "y": they disagree on pairs of an x and a y
            return torch.tensor(
                [[c.count("x") - c.count("y") for c in completions], [c.count("y") for c in completions]]
            )

    candidates = [
        {"prompt": "p", "a": " x x", "b": " y y"},
        {"prompt": "p", "a": " z", "b": " z z"},
        {"prompt": "p", "a": " x", "b": " y"},
    ]
    chosen = select_by_disagreement(candidates, Ensemble(), 2)
    assert [c["a"] for c in chosen] == [" x x", " x"]
    assert chosen[0]["priority"] > chosen[1]["priority"] > 0
    with pytest.raises(RlhflabError, match="at least 2 members"):
        Ensemble.members = [0]
        select_by_disagreement(candidates, Ensemble(), 2)


# ---------------------------------------------------------------- the server


@pytest.fixture()
def served(tmp_path):
    run = tmp_path / "run"
    store = LabelStore(run)
    store.add_queries(rows(40))
    tokens = [store.add_labeller(f"l{i}") for i in range(4)]
    server = Server(run)
    yield server, store, tokens
    server.stop()


def test_bad_requests_are_refused_and_the_server_keeps_serving(served):
    server, store, (token, *_) = served
    assert server.request("GET", "/api/next")[0] == 401
    assert server.request("GET", "/api/next", token="wrong")[0] == 401
    status, body = server.request("GET", "/api/next", token=token)
    assert status == 200 and body["labeller"] == "l0"
    qid = body["query"]["query_id"]
    status, body = server.request("POST", "/api/answer", {"query_id": "x"}, token=token)
    assert status == 422 and "valid integer" in json.dumps(body)
    assert server.request("POST", "/api/answer", {"query_id": qid, "choice": "maybe"}, token=token)[0] == 422
    assert server.request("POST", "/api/answer", b"{not json", token=token)[0] == 422
    status, body = server.request("POST", "/api/answer", {"query_id": 999, "choice": "a"}, token=token)
    assert status == 404 and "no query 999" in body["detail"]
    big = {"query_id": qid, "choice": "a", "note": "x" * 100_000}
    assert server.request("POST", "/api/answer", big, token=token)[0] == 413
    form = b"query_id=1&choice=a"
    assert server.request("POST", "/api/answer", form, token=token, headers={"Content-Type": "text/plain"})[0] == 415
    cross = {"Origin": "https://evil.example"}
    assert server.request("POST", "/api/answer", {"query_id": qid, "choice": "a"}, token=token, headers=cross)[0] == 403
    assert server.request("POST", "/api/answer", {"query_id": qid, "choice": "a"})[0] == 401
    assert store.answers() == []  # none of the above wrote anything
    assert server.request("POST", "/api/answer", {"query_id": qid, "choice": "a"}, token=token)[0] == 200
    status, body = server.request("POST", "/api/answer", {"query_id": qid, "choice": "b"}, token=token)
    assert status == 409 and "already answered" in body["detail"]
    assert [a["choice"] for a in store.answers()] == ["a"]
    page = server.request("GET", "/")[1]
    assert '<script src="/app.js"' in page and "textContent" in server.request("GET", "/app.js")[1]


def test_acknowledged_answers_survive_kill_9(served):
    server, store, tokens = served
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def label(token):
        while not stop.is_set():
            try:
                status, body = server.request("GET", "/api/next", token=token)
                if status != 200 or body["query"] is None:
                    return
                status, body = server.request(
                    "POST", "/api/answer", {"query_id": body["query"]["query_id"], "choice": "a"}, token=token
                )
            except OSError:  # the server died under us: whatever was not acknowledged may be lost
                return
            if status == 200:
                with lock:
                    acked.append((token, body["query_id"], body["answer_id"]))

    threads = [threading.Thread(target=label, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while len(acked) < 12 and time.time() < deadline:
        time.sleep(0.01)
    server.kill()  # SIGKILL, mid-load
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 12
    restarted = Server(server.run)
    try:
        ids = {a["id"] for a in store.answers()}
        assert {answer_id for _, _, answer_id in acked} <= ids
        pairs = [(a["query_id"], a["labeller"]) for a in store.answers()]
        assert len(pairs) == len(set(pairs))
        status, body = restarted.request("GET", "/api/next", token=tokens[0])
        assert status == 200 and body["progress"]["yours"] >= 1
    finally:
        restarted.stop()


# ---------------------------------------------------------------- the command line


def test_queue_serve_export_stats_commands(tmp_path, micro_model):
    run = tmp_path / "run"
    out = rlhflab(
        "label", "queue", "--run", run, "--model", micro_model, "--task", "conftest:planted_task",
        "--count", "8", "--max-new-tokens", "6", "--overlap", "0.25", "--quiet",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "queued 8 pairs" in out.stdout and "(2 shown to every labeller)" in out.stdout
    out = rlhflab("label", "add-labeller", "ann", "--run", run, check=True)
    token = out.stdout.splitlines()[1].strip()
    store = LabelStore(run)
    ann = store.authenticate(token)
    assert ann is not None and token not in (run / "labels.sqlite").read_bytes().decode("latin-1")
    for choice in ("a", "b", "skip"):
        q = store.next_query(ann)
        assert q["prompt"] and q["a"] != q["b"]
        store.answer(ann, q["query_id"], choice)
    out = rlhflab("label", "export", "--run", run, check=True)
    pairs = read_pairs(run / "human_pairs.jsonl")
    assert len(pairs) == 2 and {p.source for p in pairs} == {"human:ann"}
    assert all("gold_chosen" in p.scores for p in pairs)
    out = rlhflab("label", "stats", "--run", run, "--json", check=True)
    stats = json.loads(out.stdout)
    assert stats["answers"] == 3 and stats["queued"] == 8 and stats["by_labeller"]["ann"]["skip"] == 1
    out = rlhflab("label", "queue", "--run", run, "--model", micro_model, "--query", "disagreement")
    assert out.returncode == 2 and "--ensemble" in out.stderr
    out = rlhflab("label", "stats", "--run", tmp_path / "nothing")
    assert out.returncode == 2 and "no labels yet" in out.stderr
