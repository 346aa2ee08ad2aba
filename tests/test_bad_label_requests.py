"""The labelling server refuses every bad request cleanly: a fuzz-style sweep of bad requests.

Cases: ``/api/answer`` bodies with non-finite numbers, integers out of range, nested objects or lists
where an id or choice belongs, bytes that are not UTF-8, unpaired surrogates (escaped, or as encoded
bytes), deep nesting, or that are truncated, empty or not an object; requests with no or a bad token,
to an unknown path, with the wrong method, too large, not JSON, cross-site, or without a length.
Every one is answered with a 4xx carrying the server's security headers, and the server keeps serving
with nothing written and no temporary file left; a bug inside it is a 500 that carries them too.
"""

from __future__ import annotations

import json

import pytest
from bad_input_helpers import BIG, temp_files
from labelserver import Server

from rlhflab.feedback.label.store import LabelStore

# ---------------------------------------------------------------- the labelling server x bad requests

SECURITY_HEADERS = {
    "content-security-policy": "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@pytest.fixture(scope="module")
def label_server(tmp_path_factory):
    run = tmp_path_factory.mktemp("label") / "run"
    store = LabelStore(run)
    store.add_queries([{"prompt": "p", "a": " good", "b": " bad"}, {"prompt": "q", "a": " x", "b": " y"}])
    token = store.add_labeller("ann")
    server = Server(run)
    yield server, store, token
    server.stop()


BODIES = {
    "nan": b'{"query_id": NaN, "choice": "a"}',
    "infinity": b'{"query_id": Infinity, "choice": "a"}',
    "minus-infinity": b'{"query_id": 1, "choice": "a", "x": -Infinity}',
    "float-overflow": b'{"query_id": 1e400, "choice": "a"}',
    "int-out-of-range": b'{"query_id": ' + BIG.encode() + b', "choice": "a"}',
    "int-2**63": b'{"query_id": 9223372036854775808, "choice": "a"}',
    "int-2**64": b'{"query_id": 18446744073709551616, "choice": "a"}',
    "int-negative": b'{"query_id": -1, "choice": "a"}',
    "float-for-int": b'{"query_id": 1.5, "choice": "a"}',
    "nested-choice-object": b'{"query_id": 1, "choice": {"a": 1}}',
    "nested-choice-list": b'{"query_id": 1, "choice": ["a"]}',
    "nested-id-object": b'{"query_id": {"id": 1}, "choice": "a"}',
    "nested-id-list": b'{"query_id": [1], "choice": "a"}',
    "not-utf8": b'{"query_id": 1, "choice": "\xff"}',
    "not-utf8-key": b'{"\xfe": 1, "choice": "a"}',
    "surrogate-escape": b'{"query_id": 1, "choice": "\\ud800"}',
    "surrogate-escape-key": b'{"query_id": 1, "choice": "a", "\\udc00": 1}',
    "surrogate-bytes": b'{"query_id": 1, "choice": "\xed\xa0\x80"}',
    "not-an-object": b'[1, "a"]',
    "null": b"null",
    "deeply-nested": b"[" * 5000 + b"]" * 5000,
    "truncated": b'{"query_id": 1, "cho',
    "empty": b"",
}


def raw_request(server: Server, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def assert_refused_safely(status: int, headers: dict, raw: bytes) -> None:
    assert 400 <= status < 500, (status, raw[:300])
    for name, value in SECURITY_HEADERS.items():
        assert value in headers.get(name, ""), (name, headers)
    if headers.get("content-type", "").startswith("application/json"):
        json.loads(raw.decode("utf-8"), parse_constant=lambda c: pytest.fail(f"{c} in a response"))


@pytest.mark.parametrize("kind", list(BODIES))
def test_label_server_bad_body(kind, label_server):
    server, store, token = label_server
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert_refused_safely(*raw_request(server, "POST", "/api/answer", BODIES[kind], headers))


REQUESTS = {
    "no-token": ("GET", "/api/next", None, {}),
    "bad-token-bytes": (
        "GET",
        "/api/next",
        None,
        {"Authorization": "Bearer \udcff".encode("utf-8", "surrogateescape")},
    ),
    "unknown-path": ("GET", "/api/nothing", None, {}),
    "wrong-method": ("GET", "/api/answer", None, {}),
    "too-large": ("POST", "/api/answer", b"{" + b" " * 20_000 + b"}", {"Content-Type": "application/json"}),
    "not-json-type": ("POST", "/api/answer", b"query_id=1&choice=a", {"Content-Type": "text/plain"}),
    "cross-site": ("POST", "/api/answer", b"{}", {"Content-Type": "application/json", "Origin": "https://evil.test"}),
    "no-length": ("POST", "/api/answer", None, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}),
}


@pytest.mark.parametrize("kind", list(REQUESTS))
def test_label_server_refusals_carry_security_headers(kind, label_server):
    server, store, token = label_server
    method, path, body, headers = REQUESTS[kind]
    headers = {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in headers.items()}
    if kind not in ("no-token", "bad-token-bytes"):
        headers["Authorization"] = f"Bearer {token}"
    if kind == "no-length":
        status, got, raw = _chunked(server, path, headers)
    else:
        status, got, raw = raw_request(server, method, path, body, headers)
    assert_refused_safely(status, got, raw)


def _chunked(server: Server, path: str, headers: dict) -> tuple[int, dict, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", path)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(b"2\r\n{}\r\n0\r\n\r\n")
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_label_server_keeps_serving_and_wrote_nothing(label_server):
    server, store, token = label_server
    assert store.answers() == []
    status, body = server.request("GET", "/api/next", token=token)
    assert status == 200 and body["query"] is not None
    status, body = server.request(
        "POST", "/api/answer", {"query_id": body["query"]["query_id"], "choice": "a"}, token=token
    )
    assert status == 200 and len(store.answers()) == 1
    assert temp_files(server.run) == []


def test_label_server_answers_its_own_errors_with_security_headers(tmp_path, monkeypatch):
    """A bug (here: the store failing) is a 500 that still carries the headers, and the error is not swallowed."""
    import asyncio

    from rlhflab.feedback.label.server import create_app

    store = LabelStore(tmp_path / "run")
    token = store.add_labeller("ann")
    app = create_app(tmp_path / "run")

    class Bug(Exception):
        pass

    def broken(self, labeller):
        raise Bug("the store broke")

    monkeypatch.setattr(LabelStore, "next_query", broken)
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/api/next", "raw_path": b"/api/next", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    with pytest.raises(Bug):  # answered, then raised on for the server to log
        asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 500 and json.loads(body) == {"detail": "internal error"}
    for name, value in SECURITY_HEADERS.items():
        assert value in headers.get(name, ""), (name, headers)
