"""Login for the web app: bcrypt off the event loop, a limit on failed logins, and the auth mode
read while the app runs.

* :class:`LoginLimiter`: at most ``COACHBOT_LOGIN_MAX_FAILURES`` failed logins per user name and
  per client address within ``COACHBOT_LOGIN_WINDOW`` seconds; then that name or address is
  refused for ``COACHBOT_LOGIN_LOCKOUT`` seconds (HTTP 429 with the minutes to wait), without a
  password check.
* :class:`WebLogin`: Chainlit's password callback (bcrypt runs in a worker thread, so a login
  never stalls the other sessions) and two routes put in front of Chainlit's: ``POST /login``
  (Chainlit 2.12 passes its callback only the name and password, so the client address and the
  limiter live in this route, which then hands over to Chainlit's own login) and
  ``GET /auth/config`` (what the login page asks first).
* The auth mode: Chainlit has login on exactly while a password callback is registered, and reads
  that per request. With ``COACHBOT_AUTH=auto`` the callback is registered while the users file
  has a user and removed while it has none, checked on each login and page load and every
  :data:`RECHECK_S` seconds, so adding the first user takes effect without a restart. A users
  file that becomes malformed keeps login on (nobody can log in until it is fixed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import chainlit as cl
from fastapi import Depends, HTTPException, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from bot.config import Settings
from bot.errors import CoachbotError
from bot.store.users import UserStore

log = logging.getLogger("coachbot.auth")
T = TypeVar("T")

# bcrypt (~0.25 s of CPU a check) gets two threads of its own: a burst of logins queues here
# instead of taking the threads Chainlit and the model calls use.
LOGIN_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="coachbot-login")
RECHECK_S = 2.0  # how often the users file is looked at for the auth mode (auto)
_MAX_TRACKED = 10_000  # names and addresses remembered at most (stale ones are dropped first)


class LoginLocked(Exception):
    """Too many failed logins for this name or address: refused for ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1.0, retry_after_s)
        minutes = math.ceil(self.retry_after_s / 60)
        super().__init__(
            "Too many failed sign-ins for this account or from this address. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass(frozen=True)
class Attempt:
    """One login in progress: counted as a failure until it succeeds (so parallel guesses
    cannot all slip in before the first one fails)."""

    keys: tuple[str, ...]
    at: float


class LoginLimiter:
    """Failed logins per user name and per client address (in memory, this process)."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 300.0,
        lockout_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimiter:
        return cls(settings.login_max_failures, settings.login_window_s, settings.login_lockout_s)

    @staticmethod
    def keys(username: str, address: str | None) -> tuple[str, ...]:
        user = f"user:{(username or '').strip().casefold()}"
        return (user, f"addr:{address}") if address else (user,)

    def _fresh(self, key: str, now: float) -> _Record:
        record = self._records.setdefault(key, _Record())
        if record.locked_until and record.locked_until <= now:  # the lockout is over
            record.locked_until = 0.0
            record.failures.clear()
        while record.failures and record.failures[0] <= now - self.window_s:
            record.failures.popleft()
        return record

    def begin(self, username: str, address: str | None) -> Attempt:
        """Start a login; raises :class:`LoginLocked` when the name or address is refused."""
        keys = self.keys(username, address)
        with self._lock:
            now = self._clock()
            if len(self._records) > _MAX_TRACKED:
                self._sweep(now)
            records = [self._fresh(key, now) for key in keys]
            for record in records:
                if not record.locked_until and len(record.failures) >= self.max_failures:
                    record.locked_until = now + self.lockout_s
            wait = max(r.locked_until - now for r in records)
            if wait > 0:
                raise LoginLocked(wait)
            for record in records:
                record.failures.append(now)
        return Attempt(keys, now)

    def failed(self, attempt: Attempt) -> None:
        """The password was wrong: the attempt stays counted; the limit locks the key."""
        with self._lock:
            now = self._clock()
            for key in attempt.keys:
                record = self._fresh(key, now)
                if len(record.failures) >= self.max_failures and not record.locked_until:
                    record.locked_until = now + self.lockout_s
                    log.warning(
                        "login refused for %.0f s after %d failed attempts: %s",
                        self.lockout_s,
                        len(record.failures),
                        key,
                    )

    def succeeded(self, attempt: Attempt) -> None:
        """The user logged in: their name's failures are forgotten, the address keeps its own."""
        with self._lock:
            for key in attempt.keys:
                record = self._records.get(key)
                if record is None:
                    continue
                if key.startswith("user:"):
                    record.failures.clear()
                else:
                    self._uncount(record, attempt.at)

    def cancel(self, attempt: Attempt) -> None:
        """The login did not get to a password check: it does not count."""
        with self._lock:
            for key in attempt.keys:
                record = self._records.get(key)
                if record is not None:
                    self._uncount(record, attempt.at)

    @staticmethod
    def _uncount(record: _Record, at: float) -> None:
        with contextlib.suppress(ValueError):  # already out of the window
            record.failures.remove(at)

    def _sweep(self, now: float) -> None:
        for key in list(self._records):
            record = self._fresh(key, now)
            if not record.failures and not record.locked_until:
                del self._records[key]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _client_address(request: Request) -> str | None:
    """The client's address as uvicorn saw it (behind a proxy: from ``X-Forwarded-For`` when the
    proxy is in uvicorn's ``FORWARDED_ALLOW_IPS``, default 127.0.0.1)."""
    return request.client.host if request.client else None


class WebLogin:
    """Chainlit's password login for coachbot (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        users: UserStore | None = None,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.users = users or UserStore(settings.users_path)
        self.limiter = limiter or LoginLimiter.from_settings(settings)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._required: bool | None = None
        self._wrapped: Any = None  # the callback as Chainlit wrapped it
        self._watch: asyncio.Task[None] | None = None

    # ---- the auth mode
    def required(self) -> bool:
        """Is login required now? ``COACHBOT_AUTH`` on/off, or (auto) the users file has a user;
        the file is read again only when it changed."""
        if self.settings.auth != "auto":
            return self.settings.auth == "on"
        with self._lock:
            stamp = _stamp(self.users.path)
            if self._required is None or stamp != self._stamp:
                try:
                    self._required = self.users.has_users()
                except CoachbotError as exc:  # fail closed: login stays (or turns) on
                    log.error("login is required until the users file is fixed: %s", exc)
                    self._required = True
                self._stamp = stamp
            return self._required

    def sync(self) -> bool:
        """Register or remove Chainlit's password callback to match :meth:`required`."""
        from chainlit.config import config

        on = self.required()
        current = config.code.password_auth_callback
        if on and current is None:
            if self._wrapped is None:
                cl.password_auth_callback(self.authenticate)
                self._wrapped = config.code.password_auth_callback
            else:
                config.code.password_auth_callback = self._wrapped
            log.info("login is on (%s)", self._why())
        elif not on and current is not None and current is self._wrapped:
            config.code.password_auth_callback = None
            log.info("login is off (%s)", self._why())
        return on

    def _why(self) -> str:
        if self.settings.auth != "auto":
            return f"COACHBOT_AUTH={self.settings.auth}"
        return f"users in {self.users.path}" if self._required else f"no users in {self.users.path}"

    async def watch(self, every_s: float = RECHECK_S) -> None:
        """Keep the auth mode in step with the users file (runs until cancelled)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await _in_worker(self.sync)
            except Exception:  # never let the watch die; the next round tries again
                log.exception("could not check whether login is required")

    def start_watching(self) -> None:
        if self.settings.auth == "auto" and self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self.watch())

    # ---- Chainlit's callback and the routes in front of Chainlit's
    async def authenticate(self, username: str, password: str) -> cl.User | None:
        """Chainlit's password callback: the bcrypt check runs in a worker thread."""
        found = await _in_worker(lambda: self.users.verify(username, password))
        if found is None:
            return None
        return cl.User(identifier=found.identifier, metadata={"role": found.role})

    async def login(
        self,
        request: Request,
        response: Response,
        form_data: OAuth2PasswordRequestForm = Depends(),
    ) -> Any:
        """``POST /login``: the limiter, then Chainlit's own login (which calls the callback)."""
        from chainlit.server import login as chainlit_login

        if not await _in_worker(self.sync):  # login is off: Chainlit answers 400
            return await chainlit_login(request, response, form_data)
        try:
            attempt = self.limiter.begin(form_data.username, _client_address(request))
        except LoginLocked as exc:
            raise HTTPException(
                status_code=429,
                detail=str(exc),
                headers={"Retry-After": str(math.ceil(exc.retry_after_s))},
            ) from None
        try:
            result = await chainlit_login(request, response, form_data)
        except HTTPException as exc:
            if exc.status_code == 401:
                self.limiter.failed(attempt)
            else:
                self.limiter.cancel(attempt)
            raise
        except BaseException:
            self.limiter.cancel(attempt)
            raise
        self.limiter.succeeded(attempt)
        return result

    async def auth_config(self) -> Any:
        """``GET /auth/config``: Chainlit's answer, after the auth mode is brought up to date."""
        from chainlit.auth import get_configuration

        await _in_worker(self.sync)
        return get_configuration()

    def install(self) -> None:
        """Put the two routes in front of Chainlit's (its router matches the first route)."""
        from chainlit.config import config
        from chainlit.server import app as server

        root = config.run.root_path
        server.add_api_route(f"{root}/login", self.login, methods=["POST"])
        server.add_api_route(f"{root}/auth/config", self.auth_config, methods=["GET"])
        routes = server.router.routes
        routes[:0] = [routes.pop(), routes.pop()]


async def _in_worker(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(LOGIN_WORKERS, fn)
