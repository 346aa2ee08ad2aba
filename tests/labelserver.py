"""Start ``rlhflab label serve`` in a subprocess on a free loopback port, and talk to it."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from clirun import env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run: Path, port: int | None = None, guidelines: Path | None = None):
        self.run, self.port = run, port or free_port()
        args = [sys.executable, "-m", "rlhflab", "label", "serve", "--run", str(run), "--port", str(self.port)]
        if guidelines is not None:
            args += ["--guidelines", str(guidelines)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        deadline = time.time() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
                if time.time() > deadline:
                    raise AssertionError("server did not start within 120 s")
                time.sleep(0.2)
        self.url = f"http://127.0.0.1:{self.port}/"

    def request(self, method: str, path: str, body=None, token: str | None = None, headers: dict | None = None):
        """(status, parsed JSON or text) of one request on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=h)
        response = conn.getresponse()
        raw = response.read().decode()
        conn.close()
        is_json = response.getheader("content-type", "").startswith("application/json")
        return response.status, (json.loads(raw) if is_json else raw)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
