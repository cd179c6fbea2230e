"""Two app processes behind a proxy, on one database and one Chroma server (issue 18).

What the deploy recipe (deploy/README.md) runs at scale, on one machine: ``chroma run`` as the
shared vector store, two ``chainlit run bench/load_app.py`` processes (the real app on the fake
chat model) sharing one database, and a tiny round-robin TCP proxy in front. Chats connect
through the proxy (one websocket each, so a chat stays on its process, as sticky sessions
keep it behind a real proxy), alternate between the processes, and every line must be
answered and saved once in the shared database.

The database is a shared SQLite file, or Postgres when ``COACHBOT_TEST_DATABASE_URL`` names one
this test may write to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.load import (
    COACH,
    PRACTICE,
    AppServer,
    SessionReport,
    check_persistence,
    free_port,
    run_sessions,
    server_env,
    tracebacks,
)

SESSIONS, MESSAGES = 6, 2


class RoundRobinProxy:
    """Forwards each TCP connection to the next backend port in turn (a websocket is one
    connection, so a chat stays where it started)."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.connections = [0] * len(backends)
        self.port = free_port()
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._forward, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self._next
        self._next = (index + 1) % len(self.backends)
        self.connections[index] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backends[index])
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


@contextlib.contextmanager
def chroma_server(path: Path, log: Path) -> Iterator[int]:
    """``chroma run`` (from the venv) on a free port, until the block ends."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("chroma")), "run", "--path", str(path)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2)
                break
            assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
            time.sleep(0.3)
        else:
            raise AssertionError("the Chroma server did not start: " + log.read_text()[-2000:])
        yield port
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def _app_env(data_dir: Path, database_url: str, chroma_port: int) -> dict[str, str]:
    env = server_env(data_dir, "fake", 0.01, journal_flush_s=2.0)
    env.update(
        {
            "DATABASE_URL": database_url,
            "CHROMA_HOST": "127.0.0.1",
            "CHROMA_PORT": str(chroma_port),
        }
    )
    return env


def test_two_app_processes_share_one_database_and_one_chroma_behind_a_proxy(tmp_path: Path):
    database_url = os.environ.get("COACHBOT_TEST_DATABASE_URL") or (
        f"sqlite:///{tmp_path / 'shared.db'}"
    )
    with chroma_server(tmp_path / "chroma", tmp_path / "chroma.log") as chroma_port:
        servers = [
            AppServer(
                "bench/load_app.py",
                _app_env(tmp_path / f"data{n}", database_url, chroma_port),
                tmp_path / f"app{n}.log",
            )
            for n in (1, 2)
        ]
        proxy = RoundRobinProxy([s.port for s in servers])
        try:
            for server in servers:  # one at a time: both build the shared index at start
                server.start(120)
            proxy.start()
            reports = [SessionReport(i, PRACTICE if i % 2 == 0 else COACH) for i in range(SESSIONS)]
            deadline = time.monotonic() + 120
            asyncio.run(run_sessions(proxy.url, reports, MESSAGES, 30, deadline))
        finally:
            proxy.stop()
            for server in servers:
                server.stop()
    logs = "\n".join(s.log_text() for s in servers)
    errors = [e for r in reports for e in r.all_errors()]
    assert errors == [], (errors, logs[-3000:])
    assert all(len(r.replies) == MESSAGES and r.lost == 0 for r in reports)
    assert min(proxy.connections) >= SESSIONS // 2, proxy.connections  # both processes served
    problems, saved_sessions, saved_lines = check_persistence(database_url, reports, set())
    assert problems == [], problems
    assert saved_lines == SESSIONS * MESSAGES and saved_sessions >= SESSIONS
    assert tracebacks(logs) == [], logs[-3000:]
