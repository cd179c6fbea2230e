"""Login in the web app (bot/web/auth.py): bcrypt off the event loop, a limit on failed logins
per user name and per client address with a clear message, and the auth mode read again while
the app runs (the first user added turns login on without a restart).

The HTTP tests post to Chainlit's real server app (``chainlit.server.app``) with Starlette's
TestClient, after the app's own startup hook has configured it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from chainlit.config import config
from starlette.testclient import TestClient

from bot.service import Services
from bot.store.sessions import SessionStore
from bot.store.users import UserStore
from bot.web import app
from bot.web.auth import LoginLimiter, LoginLocked, WebLogin

from .conftest import make_settings

PASSWORD = "correct horse"


@pytest.fixture
def pristine(monkeypatch) -> Iterator[None]:
    """Chainlit and the process as before the app's startup; restored afterwards."""
    import sqlite3

    from chainlit.server import app as server

    monkeypatch.setattr(config.code, "data_layer", None)
    monkeypatch.setattr(config.code, "password_auth_callback", None)
    monkeypatch.setattr(server.router, "routes", list(server.router.routes))
    monkeypatch.delenv("CHAINLIT_AUTH_SECRET", raising=False)
    monkeypatch.setattr(app, "_configured", False)
    monkeypatch.setattr(app, "_login", None)
    adapters = dict(sqlite3.adapters)
    yield
    sqlite3.adapters.clear()
    sqlite3.adapters.update(adapters)
    app.use_services(None)


def _start_app(tmp_path, monkeypatch, *users: tuple[str, str], **settings_overrides):
    """The app's startup hook run on ``settings``; the data layer left off (not under test)."""
    settings = make_settings(tmp_path, **settings_overrides)
    store = UserStore(settings.users_path, rounds=4)
    for name, role in users:
        store.add(name, PASSWORD, role)
    svc = Services(settings, store=SessionStore(settings.database))
    monkeypatch.setattr(svc, "warm_up", lambda: None)
    app.use_services(svc)
    asyncio.run(config.code.on_app_startup())
    monkeypatch.setattr(config.code, "data_layer", None)
    return settings


def _client(address: str = "10.0.0.1") -> TestClient:
    from chainlit.server import app as server

    return TestClient(server, client=(address, 50000))


def _login(client: TestClient, user: str, password: str):
    return client.post("/login", data={"username": user, "password": password})


# --------------------------------------------------------------------------- off the loop


def test_the_password_check_runs_in_a_worker_thread_and_the_loop_keeps_serving(tmp_path):
    """A slow bcrypt check (0.6 s here) must not stall the event loop that serves every
    session: a ticker on the loop keeps ticking while the login is checked."""
    settings = make_settings(tmp_path)
    users = UserStore(settings.users_path, rounds=4)
    users.add("tess", PASSWORD, "trainee")
    threads: list[str] = []
    real_verify = users.verify

    def slow_verify(name: str, password: str):
        threads.append(threading.current_thread().name)
        time.sleep(0.6)  # as a bcrypt check on a busy machine
        return real_verify(name, password)

    users.verify = slow_verify  # type: ignore[method-assign]
    login = WebLogin(settings, users=users)

    async def run() -> tuple[object, float]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        user = await login.authenticate("tess", PASSWORD)
        done.set()
        await tick
        return user, max(gaps)

    user, worst_gap = asyncio.run(run())
    assert user is not None and user.identifier == "tess" and user.metadata == {"role": "trainee"}
    assert threads and threads[0].startswith("coachbot-login")
    assert worst_gap < 0.3, f"the event loop stalled for {worst_gap:.2f} s during a login"


# --------------------------------------------------------------------------- failure limits


def test_five_failures_lock_the_user_name_with_a_clear_message(tmp_path, monkeypatch, pristine):
    _start_app(tmp_path, monkeypatch, ("tess", "trainee"))
    client = _client("10.0.0.1")
    for _ in range(5):
        assert _login(client, "tess", "wrong password").status_code == 401
    locked = _login(client, "tess", PASSWORD)  # the right password, but locked now
    assert locked.status_code == 429
    detail = locked.json()["detail"]
    assert "Too many failed sign-ins" in detail and "Try again in 15 minutes" in detail
    assert int(locked.headers["Retry-After"]) > 800
    # The name is locked from any address (guessing from many machines does not help) ...
    assert _login(_client("10.0.0.2"), "TESS", PASSWORD).status_code == 429
    # ... and a correct login before the limit works and forgets the name's failures.
    other = _client("10.0.0.3")
    UserStore(make_settings(tmp_path).users_path, rounds=4).add("sam", PASSWORD, "agent")
    for _ in range(4):
        assert _login(other, "sam", "wrong password").status_code == 401
    ok = _login(other, "sam", PASSWORD)
    assert ok.status_code == 200 and ok.json() == {"success": True}


def test_five_failures_lock_the_client_address_whatever_the_names(tmp_path, monkeypatch, pristine):
    _start_app(tmp_path, monkeypatch, ("tess", "trainee"))
    attacker = _client("192.0.2.7")
    for i in range(5):
        assert _login(attacker, f"guess{i}", "wrong password").status_code == 401
    locked = _login(attacker, "tess", PASSWORD)
    assert locked.status_code == 429 and "Try again in" in locked.json()["detail"]
    # Another address is not affected, and neither is tess herself.
    assert _login(_client("198.51.100.1"), "tess", PASSWORD).status_code == 200


def test_the_limits_come_from_the_settings(tmp_path, monkeypatch, pristine):
    monkeypatch.setenv("COACHBOT_LOGIN_MAX_FAILURES", "2")
    monkeypatch.setenv("COACHBOT_LOGIN_LOCKOUT", "60")
    settings = make_settings(tmp_path)
    assert (settings.login_max_failures, settings.login_lockout_s) == (2, 60.0)
    _start_app(tmp_path, monkeypatch, ("tess", "trainee"))
    client = _client()
    assert _login(client, "tess", "nope nope").status_code == 401
    assert _login(client, "tess", "nope nope").status_code == 401
    locked = _login(client, "tess", PASSWORD)
    assert locked.status_code == 429 and "Try again in 1 minute." in locked.json()["detail"]


def test_a_lockout_ends_and_parallel_guesses_count_before_they_finish():
    now = [1000.0]
    limiter = LoginLimiter(max_failures=3, window_s=300, lockout_s=600, clock=lambda: now[0])
    attempts = [limiter.begin("tess", "10.0.0.1") for _ in range(3)]  # all in flight at once
    with pytest.raises(LoginLocked):
        limiter.begin("tess", "10.0.0.9")
    for attempt in attempts:
        limiter.failed(attempt)
    now[0] += 599
    with pytest.raises(LoginLocked) as locked:
        limiter.begin("tess", "10.0.0.2")
    assert locked.value.retry_after_s == pytest.approx(1, abs=0.01)
    now[0] += 2  # the lockout is over: a fresh start
    limiter.succeeded(limiter.begin("tess", "10.0.0.1"))
    # Failures older than the window do not add up.
    for _ in range(2):
        limiter.failed(limiter.begin("sam", None))
    now[0] += 301
    for _ in range(2):
        limiter.failed(limiter.begin("sam", None))
    limiter.begin("sam", None)  # 2 in the window, not 4: allowed


# --------------------------------------------------------------------------- auth mode


def test_adding_the_first_user_turns_login_on_without_a_restart(tmp_path, monkeypatch, pristine):
    settings = _start_app(tmp_path, monkeypatch)  # COACHBOT_AUTH=auto, no users yet
    client = _client()
    assert not client.get("/auth/config").json()["requireLogin"]
    assert client.get("/user").status_code == 200  # open: no login needed

    UserStore(settings.users_path, rounds=4).add("tess", PASSWORD, "trainer")
    assert client.get("/auth/config").json()["requireLogin"] is True  # the next page load
    assert client.get("/user").status_code == 401
    assert _login(client, "tess", PASSWORD).status_code == 200

    UserStore(settings.users_path).remove("tess")
    assert not client.get("/auth/config").json()["requireLogin"]  # auto: no users, open


def test_the_auth_mode_is_also_rechecked_in_the_background(tmp_path):
    """Clients that skip the login page (a reconnecting socket) see the change within a check."""
    from chainlit.auth import require_login

    settings = make_settings(tmp_path)
    login = WebLogin(settings)

    async def run() -> tuple[bool, bool]:
        watch = asyncio.create_task(login.watch(every_s=0.05))
        try:
            await asyncio.sleep(0.2)
            before = require_login()
            await asyncio.to_thread(
                UserStore(settings.users_path, rounds=4).add, "tess", PASSWORD, "trainee"
            )
            await asyncio.sleep(0.3)
            return before, require_login()
        finally:
            watch.cancel()

    saved = config.code.password_auth_callback
    try:
        config.code.password_auth_callback = None
        before, after = asyncio.run(run())
        assert not before and after
    finally:
        config.code.password_auth_callback = saved


def test_a_users_file_broken_while_running_keeps_login_on(tmp_path):
    settings = make_settings(tmp_path)
    UserStore(settings.users_path, rounds=4).add("tess", PASSWORD, "trainee")
    login = WebLogin(settings)
    assert login.required()
    settings.users_path.write_text("users:\n  - identifier: tess\n")  # no hash, no role
    assert login.required()  # fail closed: never open to everyone


def test_auth_off_never_asks_for_a_login(tmp_path, monkeypatch, pristine):
    settings = _start_app(tmp_path, monkeypatch, ("tess", "trainee"), auth="off")
    assert settings.auth == "off"
    assert not _client().get("/auth/config").json()["requireLogin"]
