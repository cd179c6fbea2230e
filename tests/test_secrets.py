"""Secrets are never logged or shown: the login-token secret and the OpenAI API key.

A local stand-in for an OpenAI-compatible server plays the worst case: every error it returns
quotes the key it was sent (as some proxies and servers do; OpenAI itself quotes part of it).
The secrets must not appear in ``coachbot doctor`` (JSON or table), in any ``coachbot`` error
message or output, in the app's log during its handlers, or in eval reports.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import main as cli
from bot.config import get_settings

KEY = "sk-test-" + secrets.token_hex(16)
AUTH_SECRET = "auth-" + secrets.token_urlsafe(24)
COACH_REPLY = (
    'Say: "You have every right to be upset, and I am sorry your parcel arrived broken."\n'
    "Why: Validating their feelings helps them feel heard [1]."
)
CUSTOMER_LINE = "I want this sorted today, the parcel came smashed and the rain got in."


# ----------------------------------------------------------------- a leaky stand-in server


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def log_message(self, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        auth = self.headers.get("Authorization", "")
        self.server.seen_keys.append(auth)
        mode = self.server.mode
        if mode != "ok":
            payload = {
                "error": {
                    "message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')}. "
                    f"You sent the header 'Authorization: {auth}'.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
            self._send(int(mode), "application/json", json.dumps(payload).encode())
            return
        if self.path.endswith("/embeddings"):
            inputs = body.get("input") or [""]
            data = [
                {"object": "embedding", "index": i, "embedding": [0.1] * 8}
                for i in range(len(inputs) if isinstance(inputs, list) else 1)
            ]
            self._send(200, "application/json", json.dumps({"data": data}).encode())
            return
        first = str((body.get("messages") or [{}])[0].get("content", ""))
        text = COACH_REPLY if "coachbot" in first else CUSTOMER_LINE
        if body.get("stream"):
            chunks = [
                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": word}}]}
                for word in text.split(" ")
            ]
            for chunk in chunks[1:]:
                chunk["choices"][0]["delta"]["content"] = (
                    " " + chunk["choices"][0]["delta"]["content"]
                )
            chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            events = b"".join(
                b"data: "
                + json.dumps(
                    {"id": "x", "object": "chat.completion.chunk", "created": 0, **c}
                ).encode()
                + b"\n\n"
                for c in chunks
            )
            self._send(200, "text/event-stream", events + b"data: [DONE]\n\n")
            return
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "gpt-4o-mini"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        self._send(200, "application/json", json.dumps(reply).encode())

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeOpenAI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "401"
        self.seen_keys: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.shutdown()
    fake.server_close()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("secrets")
    cache = root / "cache"
    cache.mkdir()
    for npz in get_settings().cache_dir.glob("guidance-*.npz"):
        shutil.copy(npz, cache / npz.name)
    return {"data": root / "data", "cache": cache}


@pytest.fixture(scope="module")
def file_secret(dirs) -> str:
    """The secret the app generates into data/.chainlit_auth_secret when none is set."""
    from bot.config import Settings
    from bot.store.users import ensure_auth_secret

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CHAINLIT_AUTH_SECRET", raising=False)
        secret = ensure_auth_secret(Settings(_env_file=None, data_dir=dirs["data"]))
    assert (dirs["data"] / ".chainlit_auth_secret").read_text().strip() == secret
    return secret


@pytest.fixture
def env(server, dirs, file_secret, monkeypatch) -> Iterator[FakeOpenAI]:
    """coachbot configured for the leaky server, with both secrets in the environment."""
    values = {
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": server.url,
        "OPENAI_MAX_RETRIES": "0",
        "OPENAI_TIMEOUT": "10",
        "COACHBOT_LLM": "openai",
        "COACHBOT_EMBEDDINGS": "local",
        "COACHBOT_DATA_DIR": str(dirs["data"]),
        "COACHBOT_CACHE_DIR": str(dirs["cache"]),
        "CHAINLIT_AUTH_SECRET": AUTH_SECRET,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("COACHBOT_JUDGE_MODEL", "COACHBOT_FALLBACK", "COACHBOT_PROMPTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    server.mode = "401"
    server.seen_keys.clear()
    get_settings.cache_clear()
    yield server
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def ingested(server, dirs, file_secret) -> None:
    """The knowledge index in the test's data directory (local embeddings)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COACHBOT_DATA_DIR", str(dirs["data"]))
        mp.setenv("COACHBOT_CACHE_DIR", str(dirs["cache"]))
        mp.setenv("COACHBOT_EMBEDDINGS", "local")
        get_settings.cache_clear()
        result = CliRunner().invoke(cli.app, ["ingest"])
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output


def leaks(text: str, *extra: str) -> list[str]:
    """Which secrets (or a telling part of them) appear in ``text``."""
    found = []
    random_part = KEY.removeprefix("sk-test-")
    for name, value in [("API key", KEY), ("auth secret", AUTH_SECRET), *extra_named(extra)]:
        if value in text:
            found.append(name)
    for start in range(0, len(random_part) - 11, 4):  # a partly masked key still leaks
        if random_part[start : start + 12] in text:
            found.append(f"12 characters of the API key ({random_part[start : start + 12]})")
            break
    return found


def extra_named(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [("generated auth secret", v) for v in values]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, result.stdout + result.stderr + repr(result.exception or "")


# ----------------------------------------------------------------- doctor


@pytest.mark.parametrize("mode", ["401", "400", "403", "404", "500", "ok"])
@pytest.mark.parametrize("as_json", [True, False])
def test_doctor_never_shows_the_secrets(env, ingested, file_secret, mode, as_json):
    env.mode = mode
    _code, output = run("doctor", *(["--json"] if as_json else []))
    assert "OpenAI API" in output
    assert env.seen_keys and env.seen_keys[-1] == f"Bearer {KEY}"  # the key was really sent
    assert leaks(output, file_secret) == [], output
    if as_json:
        checks = json.loads(output[: output.rindex("}") + 1])["checks"]
        api = next(c for c in checks if c["name"] == "OpenAI API")
        assert api["status"] == ("ok" if mode == "ok" else "fail")


def _openai_embeddings(monkeypatch) -> None:
    from bot.llm.tokens import seed_tiktoken_cache

    seed_tiktoken_cache()  # OpenAIEmbeddings needs the plain cl100k_base, offline
    monkeypatch.setenv("COACHBOT_EMBEDDINGS", "openai")
    get_settings.cache_clear()


def test_doctor_with_openai_embeddings_never_shows_the_key(env, ingested, file_secret, monkeypatch):
    _openai_embeddings(monkeypatch)
    code, output = run("doctor", "--json")
    assert code == 1 and "embeddings" in output
    assert f"Bearer {KEY}" in env.seen_keys  # the embeddings request reached the server
    assert leaks(output, file_secret) == [], output


# ----------------------------------------------------------------- coachbot commands


def test_ask_never_shows_the_key(env, ingested, file_secret):
    for extra in ([], ["--json"]):
        _code, output = run("ask", "He is shouting about his broken parcel", *extra)
        assert env.seen_keys[-1] == f"Bearer {KEY}"
        assert leaks(output, file_secret) == [], output


def test_ask_json_model_error_never_holds_the_key(env, ingested, file_secret):
    env.mode = "400"  # the generic path: the server's own message is quoted, redacted
    _code, output = run("ask", "He is shouting about his broken parcel", "--json")
    data = json.loads(output[: output.rindex("}") + 1])
    assert data["model_error"], "the model failed, so the answer came from the catalogue"
    assert leaks(output, file_secret) == [], output


def test_roleplay_never_shows_the_key(env, ingested, file_secret, tmp_path):
    turns = tmp_path / "turns.txt"
    turns.write_text("I'm so sorry your parcel arrived smashed.\nTell me more.\n")
    for extra in ([], ["--json"]):
        _code, output = run(
            "roleplay", "--scenario", "damaged-delivery", "--turns", str(turns), *extra
        )
        assert leaks(output, file_secret) == [], output


def test_ingest_with_openai_embeddings_error_is_one_line_without_the_key(
    env, file_secret, tmp_path, monkeypatch
):
    monkeypatch.setenv("COACHBOT_DATA_DIR", str(tmp_path / "data"))
    _openai_embeddings(monkeypatch)
    code, output = run("ingest")
    assert code != 0 and env.seen_keys[-1] == f"Bearer {KEY}"
    assert leaks(output, file_secret) == [], output


# ----------------------------------------------------------------- eval reports

SUITE = """
name: secrets
cases:
  - id: shouting
    kind: coach
    question: "He is shouting about his broken parcel, what do I say?"
    assert:
      - {type: out_of_scope, expected: false}
  - id: sorry
    kind: customer
    scenario: damaged-delivery
    turns:
      - "I'm so sorry your parcel arrived smashed."
    assert:
      - {type: outcome, equals: ended}
"""


def test_eval_reports_never_hold_the_key(env, ingested, file_secret, tmp_path):
    env.mode = "ok"
    suite = tmp_path / "secrets.yaml"
    suite.write_text(SUITE)
    report = tmp_path / "report"
    baseline = tmp_path / "baseline.json"
    code, output = run(
        "eval", str(suite), "--report", str(report), "--save-baseline", str(baseline), "--json"
    )
    assert code == 0, output
    data = json.loads(output[: output.rindex("}") + 1])
    assert data["model"].startswith("gpt-4o-mini via http://127.0.0.1")  # the model is named
    files = [*report.iterdir(), baseline, *(Path(env_dir()) / "evals").glob("cache.sqlite3*")]
    assert {p.name for p in files} >= {"report.html", "junit.xml", "results.json"}
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert leaks(text, file_secret) == [], path
    assert leaks(output, file_secret) == []


def env_dir() -> str:
    return str(get_settings().cache_dir)


def test_eval_that_cannot_reach_the_model_says_why_without_the_key(
    env, ingested, file_secret, tmp_path
):
    suite = tmp_path / "secrets.yaml"
    suite.write_text(SUITE)
    _code, output = run("eval", str(suite), "--no-cache", "--report", str(tmp_path / "r"))
    assert env.seen_keys[-1] == f"Bearer {KEY}"
    assert leaks(output, file_secret) == [], output
    for path in (tmp_path / "r").glob("*"):
        assert leaks(path.read_text(errors="replace"), file_secret) == [], path


# ----------------------------------------------------------------- the app's log


@pytest.mark.parametrize("mode", ["401", "400", "500", "ok"])
def test_app_handlers_never_log_or_show_the_secrets(
    env, ingested, file_secret, caplog, tmp_path, mode
):
    from chainlit import Action

    from bot.config import get_settings as settings_now
    from bot.service import Services
    from bot.store.sessions import SessionStore
    from bot.web import app

    from .test_app import Browser

    env.mode = mode
    settings = settings_now()
    services = Services(settings, store=SessionStore(f"sqlite:///{tmp_path / 'app.db'}"))
    app.use_services(services)
    caplog.set_level(logging.DEBUG)  # every logger, openai's and httpx's included
    try:
        coach = Browser(app.COACH)
        coach.run(app.on_chat_start)
        coach.say("The customer is shouting about a broken parcel, what do I say?")
        practice = Browser(app.PRACTICE)
        practice.run(app.on_chat_start)
        practice.say("I'm so sorry your parcel arrived smashed, that must be really upsetting.")
        practice.run(app.on_end, Action(name="end_debrief", payload={}))
    finally:
        app.use_services(None)
    assert env.seen_keys and env.seen_keys[-1] == f"Bearer {KEY}"
    shown = json.dumps([coach.events, practice.events], default=str)
    assert coach.texts() and practice.texts()
    assert leaks(caplog.text, file_secret) == [], caplog.text[-2000:]
    assert leaks(shown, file_secret) == []
    saved = tmp_path / "app.db"
    assert leaks(saved.read_bytes().decode("utf-8", errors="replace"), file_secret) == []


# ----------------------------------------------------------------- credentials in the base URL

URL_PASSWORD = "s3cret-" + secrets.token_hex(6)


@pytest.fixture
def url_with_credentials(env, monkeypatch) -> str:
    """OPENAI_BASE_URL with a user and password in it (https://bob:s3cret@host/v1)."""
    url = env.url.replace("http://", f"http://bob:{URL_PASSWORD}@")
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    get_settings.cache_clear()
    return url


@pytest.mark.parametrize("mode", ["401", "ok"])
def test_doctor_never_shows_url_credentials(env, ingested, url_with_credentials, mode):
    env.mode = mode
    _code, output = run("doctor", "--json")
    assert env.seen_keys, "the server was called"
    assert URL_PASSWORD not in output, output
    assert leaks(output) == []


def test_eval_reports_never_hold_url_credentials(env, ingested, url_with_credentials, tmp_path):
    env.mode = "ok"
    suite = tmp_path / "secrets.yaml"
    suite.write_text(SUITE)
    report = tmp_path / "report"
    code, output = run("eval", str(suite), "--report", str(report), "--json", "--no-cache")
    assert code == 0, output
    data = json.loads(output[: output.rindex("}") + 1])
    assert data["model"].startswith("gpt-4o-mini via http://bob:***@127.0.0.1")
    assert URL_PASSWORD not in output
    for path in report.iterdir():
        assert URL_PASSWORD not in path.read_text(errors="replace"), path


@pytest.mark.parametrize("mode", ["401", "400"])
def test_app_with_openai_embeddings_says_why_without_the_key(
    env, ingested, file_secret, caplog, tmp_path, monkeypatch, mode
):
    """The coach's retrieval fails at the embeddings API: the trainee sees the cause in one
    line, and neither the screen nor the log holds the key the server quoted back."""
    from bot.service import Services
    from bot.store.sessions import SessionStore
    from bot.web import app

    from .test_app import Browser

    env.mode = mode
    _openai_embeddings(monkeypatch)
    services = Services(get_settings(), store=SessionStore(f"sqlite:///{tmp_path / 'app.db'}"))
    app.use_services(services)
    caplog.set_level(logging.DEBUG)
    try:
        coach = Browser(app.COACH)
        coach.run(app.on_chat_start)
        coach.say("The customer is shouting about a broken parcel, what do I say?")
    finally:
        app.use_services(None)
    assert env.seen_keys[-1] == f"Bearer {KEY}"  # the embeddings request reached the server
    shown = json.dumps(coach.events, default=str)
    assert "the API" in shown and "AuthenticationError" not in shown, coach.texts()
    assert leaks(caplog.text, file_secret) == [], caplog.text[-2000:]
    assert leaks(shown, file_secret) == []
