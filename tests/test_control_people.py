"""People in the control loop: clip queries in the label store and over HTTP, the loop waiting for a person's
answers, late answers and restarts that lose no label, and bad input. Frames are faked where the loop renders
(rendering itself is tested in test_control_study.py): these tests need no GL."""

import http.client
import json
import threading

import numpy as np
import pytest
import torch

from rlhflab.control.people import People
from rlhflab.control.segments import SegmentBank
from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.feedback.label.clips import ClipQueue
from rlhflab.feedback.label.store import LabelStore

VIDEO = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4


def fake_frames(env, clips, size):
    """Frames that differ between clips (the MP4s must be real videos, not the same bytes twice)."""
    return [np.full((len(s), 16, 16, 3), int(abs(s).sum() * 37) % 256, np.uint8) for s in clips]


def raw(port: int, path: str, token: str | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    response = conn.getresponse()
    out = response.status, dict(response.getheaders()), response.read()
    conn.close()
    return out


def test_clip_queries_in_the_store_and_over_http(tmp_path):
    from labelserver import Server

    run = tmp_path / "run"
    store = LabelStore(run)
    store.add_queries([{"prompt": "p", "a": " x", "b": " y"}])
    queue = ClipQueue(store, "Reacher-v5")
    rows = [{"caption": f"pair {i}", "video_a": VIDEO + bytes([i]), "video_b": VIDEO + bytes([i, 1]),
             "segments": b"seg%d" % i, "gold_a": 1.0, "gold_b": 0.0, "priority": 10 - i} for i in range(2)]  # fmt: skip
    with pytest.raises(RlhflabError, match="clip query 2: video_b must be non-empty bytes"):
        queue.put([rows[0], {**rows[1], "video_b": b""}])
    assert store.progress(store.authenticate(store.add_labeller("probe")))["queued"] == 1  # nothing half-queued
    first, second = queue.put(rows)
    token = store.add_labeller("ann")
    server = Server(run)
    try:
        status, data = server.request("GET", "/api/next", token=token)
        query = data["query"]
        assert status == 200 and query["query_id"] == first and query["clip"] is True and query["prompt"] == "pair 0"
        status, headers, body = raw(server.port, f"/api/clip/{first}/b", token)
        assert status == 200 and headers["content-type"] == "video/mp4" and body == VIDEO + bytes([0, 1])
        assert "media-src 'self' blob:" in headers["content-security-policy"]
        assert raw(server.port, f"/api/clip/{first}/a")[0] == 401  # no token, no video
        for path, code, says in [(f"/api/clip/{second}/a", 409, "was not given to you"),
                                 ("/api/clip/1/a", 404, "not a clip query"),
                                 (f"/api/clip/{first}/c", 404, "sides a and b"),
                                 ("/api/clip/0/a", 422, "")]:  # fmt: skip
            status, _, body = raw(server.port, path, token)
            assert status == code and says in body.decode(), (path, status, body)
        assert server.request("POST", "/api/answer", {"query_id": first, "choice": "a"}, token=token)[0] == 200
        status, data = server.request("POST", "/api/answer", {"query_id": first, "choice": "b"}, token=token)
        assert status == 409 and "already answered" in data["detail"]
        status, data = server.request("POST", "/api/answer", {"query_id": 999, "choice": "b"}, token=token)
        assert status == 404 and "there is no query 999" in data["detail"]
    finally:
        server.stop()
    (answer,) = queue.answers()
    assert (answer.query_id, answer.choice, answer.labeller, answer.segments) == (first, "a", "ann", b"seg0")
    assert queue.answers(after=answer.answer_id) == [] and queue.unanswered([first, second]) == 1
    assert store.export_pairs() == []  # a clip answer is no text pair
    from clirun import rlhflab

    out = rlhflab("label", "export", "--run", run, check=True)
    assert "wrote 0 pairs" in out.stdout and "1 answers about clips are not text pairs" in out.stdout
    stats = store.stats()
    assert stats["answers"] == 1 and stats["gold_agreement"] == 1 and stats["gold_answers"] == 1


def bank_of(n: int, obs_dim: int = 3, length: int = 4, seed: int = 0) -> SegmentBank:
    rng = np.random.default_rng(seed)
    return SegmentBank(rng.normal(size=(n, length, obs_dim)).astype(np.float32),
                       rng.normal(size=(n, length, 2)).astype(np.float32), rng.normal(size=(n, length)),
                       rng.normal(size=(n, length)), rng.normal(size=(n, length, 5)), np.zeros(n, np.int64))  # fmt: skip


def answer_all(store: LabelStore, who, choose) -> list[str]:
    """Answer every query ``who`` can get with ``choose(query_row)``; returns the choices made."""
    made = []
    while (query := store.next_query(who)) is not None:
        choice = choose(query["query_id"])
        store.answer(who, query["query_id"], choice)
        made.append(choice)
    return made


def test_late_answers_and_a_restart_lose_no_label(tmp_path, monkeypatch):
    monkeypatch.setattr("rlhflab.control.people.render_many", fake_frames)
    run, bank, rng = tmp_path / "run", bank_of(6), np.random.default_rng(0)
    people = People(run, "Reacher-v5", wait_seconds=0, progress=False)
    pairs, labels = people.ask(bank, np.array([[0, 1], [2, 3], [4, 5]]), rng, 0)
    assert len(pairs) == len(labels) == 0  # nobody answered within the wait: nothing yet, nothing lost
    store = LabelStore(run)
    who = store.authenticate(store.add_labeller("ann"))
    choices = iter(["b", "skip", "tie"])
    assert answer_all(store, who, lambda q: next(choices)) == ["b", "skip", "tie"]
    pairs, labels = people.ask(bank, np.zeros((0, 2), np.int64), rng, 1)  # the late answers, a round later
    assert pairs.tolist() == [[0, 1], [2, 3], [4, 5]] and labels.tolist() == [0.0, -1.0, 0.5]
    assert len(people.ask(bank, np.zeros((0, 2), np.int64), rng, 2)[0]) == 0  # each answer taken once
    # a restart from a checkpoint taken before those answers, whose bank lacks segments 2-5: they come back
    again = People(run, "Reacher-v5", wait_seconds=0, progress=False)
    again.restore({"taken": 0})
    small = SegmentBank(*(getattr(bank, k)[:2] for k in ("obs", "acts", "gold", "perceived", "states", "round")))
    pairs, labels = again.ask(small, np.zeros((0, 2), np.int64), rng, 7)
    assert pairs.tolist() == [[0, 1], [2, 3], [4, 5]] and len(small) == 6 and small.round[2:].tolist() == [7] * 4
    assert all(np.array_equal(small.obs[i], bank.obs[i]) for i in range(6)) and labels.tolist() == [0, -1, 0.5]
    assert again.state() == {"taken": 3}
    # answers about segments of another run's shapes: a one-line error naming the query
    other = People(run, "Reacher-v5", wait_seconds=0, progress=False)
    other.restore({"taken": 3})
    other.ask(bank_of(2, obs_dim=7), np.array([[0, 1]]), rng, 0)
    answer_all(store, who, lambda q: "a")
    with pytest.raises(
        DataError, match=r"labels.sqlite: query 4 \(answer 4\): obs of shape \[2, 4, 7\].*do not exist in this run"
    ):
        People(run, "Reacher-v5", wait_seconds=0, progress=False).ask(bank, np.zeros((0, 2), np.int64), rng, 0)
    with pytest.raises(RlhflabError, match="wait must be >= 0"):
        People(run, "Reacher-v5", wait_seconds=-1)


def test_the_loop_waits_for_a_persons_labels(tmp_path, monkeypatch):
    """A person (a thread answering through the store by the gold returns the queries carry) labels every clip;
    each comparison the loop trains on matches that person's answer about those very segments."""
    from rlhflab.control.envs import make_env, resolve_view
    from rlhflab.control.loop import ControlConfig, preference_rl
    from rlhflab.control.reward_net import RewardNetConfig

    monkeypatch.setattr("rlhflab.control.people.render_many", fake_frames)
    torch.set_num_threads(1)
    run = tmp_path / "run"
    store = LabelStore(run)
    who = store.authenticate(store.add_labeller("ann"))
    stop, made = threading.Event(), []

    def choose(query_id):
        import sqlite3

        with sqlite3.connect(run / "labels.sqlite") as db:
            a, b = db.execute("SELECT gold_a, gold_b FROM queries WHERE id = ?", (query_id,)).fetchone()
        return "skip" if query_id % 5 == 0 else "ab"[b > a]

    def person():
        while not stop.is_set():
            made.extend(answer_all(store, who, choose))
            stop.wait(0.02)

    thread = threading.Thread(target=person, daemon=True)
    thread.start()
    config = ControlConfig(total_steps=384, n_steps=128, rounds=3, labels=12, initial_steps=100, eval_episodes=2,
                           reward=RewardNetConfig(reward_epochs=2))  # fmt: skip
    teacher = People(run, "Reacher-v5", wait_seconds=60, poll_seconds=0.02, progress=False)
    try:
        result = preference_rl(lambda: make_env("Reacher-v5"), resolve_view("true"), teacher, config, progress=False)
    finally:
        stop.set()
        thread.join(10)
    assert len(made) == 12 and made.count("skip") == 2  # every query was waited for and answered: 10 labels
    assert result.summary["queries_skipped"] == 2 and len(result.comparisons) == 10
    bank, c = result.bank, result.comparisons
    first_better = bank.gold[c[:, 0].astype(int)].sum(-1) > bank.gold[c[:, 1].astype(int)].sum(-1)
    assert (c[:, 2] == first_better).all()  # the answer reached the loop about the segments it was asked about
    assert [r["labels"] for r in result.history] == [3 + 4, 3 + 4 + 3, 10]  # ids 5 and 10 skipped


def test_people_through_the_pipeline_survive_a_crash(tmp_path, monkeypatch):
    """No person answers during the run; it crashes after round 1; the answers given then are taken on resume."""
    from rlhflab.control.loop import ControlConfig
    from rlhflab.control.reward_net import RewardNetConfig
    from rlhflab.pipeline import control as pipeline
    from rlhflab.run.rundir import RunDir

    monkeypatch.setattr("rlhflab.control.people.render_many", fake_frames)
    torch.set_num_threads(1)
    config = ControlConfig(total_steps=384, n_steps=128, rounds=3, labels=12, initial_steps=100, eval_episodes=2,
                           reward=RewardNetConfig(reward_epochs=2))  # fmt: skip
    run = tmp_path / "run"
    save = pipeline.save_round

    def crash_after_round_1(run_, state):
        save(run_, state)
        if state.round == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "save_round", crash_after_round_1)
    with pytest.raises(KeyboardInterrupt):
        pipeline.control_train(RunDir(run), "Reacher-v5", "true", People(run, "x", wait_seconds=0), config,
                               progress=False)  # fmt: skip
    monkeypatch.setattr(pipeline, "save_round", save)
    manifest = json.loads((run / "manifest.json").read_text())["stages"]["control"]
    assert manifest["args"]["people"] == {"wait_seconds": 0}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["labels"] for r in rows] == [0, 0]  # queued, nobody answered yet
    store = LabelStore(run)
    who = store.authenticate(store.add_labeller("ann"))
    assert len(answer_all(store, who, lambda q: "a")) == 3 + 5 + 4  # the first labels, after rounds 0 and 1
    summary = pipeline.resume_control(run, progress=False)  # takes them before the last round trains
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["labels"] for r in rows] == [0, 0, 12] and summary["train"]["queries"] == 12
    with np.load(run / "segments.npz") as data:
        assert data["comparisons"].shape == (12, 3) and (data["comparisons"][:, 2] == 1).all()
        assert data["comparisons"][:, :2].max() < len(data["gold"])
