"""Login users: a YAML file of bcrypt-hashed passwords and roles, and the auth settings.

The file (``COACHBOT_USERS_FILE``, default ``<data_dir>/users.yaml``) looks like::

    users:
      - identifier: sam
        password_hash: $2b$12$...
        role: trainee          # trainee | agent | trainer
        created_at: 2025-01-31T09:00:00Z

It is written atomically (temp file + rename) with mode 0600, and validated on load with errors
that name the file and the field. Passwords are never stored or logged in clear.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.datafiles import read_yaml, validate_model
from bot.errors import CoachbotError, DataValidationError

if TYPE_CHECKING:
    from bot.config import Settings

try:  # serialise concurrent writers (two `coachbot users add` at once)
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

Role = Literal["trainee", "agent", "trainer"]
ROLES: tuple[str, ...] = get_args(Role)
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_BYTES = 72  # bcrypt's limit
AUTH_SECRET_FILE = ".chainlit_auth_secret"


class UserEntry(BaseModel):
    """One user as stored in the file."""

    model_config = ConfigDict(extra="forbid")

    identifier: str = Field(min_length=1, max_length=100)
    password_hash: str
    role: Role
    created_at: datetime
    groups: list[str] = Field(default_factory=list)  # cohorts a trainer can assign to at once

    @field_validator("identifier")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return check_identifier(value)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        return [check_identifier(g) for g in value]

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not value.startswith(("$2a$", "$2b$", "$2y$")) or len(value) != 60:
            raise ValueError("not a bcrypt hash (set it with `coachbot users add`)")
        return value


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[UserEntry] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _unique(cls, users: list[UserEntry]) -> list[UserEntry]:
        seen: dict[str, int] = {}
        for i, user in enumerate(users):
            key = user.identifier.casefold()
            if key in seen:
                raise ValueError(
                    f"duplicate identifier {user.identifier!r} (entries {seen[key]} and {i})"
                )
            seen[key] = i
        return users


class UserInfo(BaseModel):
    """A user without the password hash: what callers get."""

    identifier: str
    role: Role
    created_at: datetime
    groups: list[str] = Field(default_factory=list)


def _info(entry: UserEntry) -> UserInfo:
    return UserInfo(
        identifier=entry.identifier,
        role=entry.role,
        created_at=entry.created_at,
        groups=list(entry.groups),
    )


def check_identifier(value: str) -> str:
    """A login name: no surrounding or inner whitespace, no control characters."""
    if not value or value != value.strip():
        raise ValueError("must not be empty or start/end with spaces")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("must not contain spaces or control characters")
    if len(value) > 100:
        raise ValueError("must be at most 100 characters")
    return value


def _check_password(password: str) -> bytes:
    if not password or not password.strip():
        raise CoachbotError(
            "the password is empty", hint=f"use at least {MIN_PASSWORD_CHARS} characters"
        )
    if len(password) < MIN_PASSWORD_CHARS:
        raise CoachbotError(
            f"the password is too short ({len(password)} characters)",
            hint=f"use at least {MIN_PASSWORD_CHARS} characters",
        )
    raw = password.encode("utf-8")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise CoachbotError(
            f"the password is too long ({len(raw)} bytes)",
            hint=f"bcrypt uses at most {MAX_PASSWORD_BYTES} bytes; use a shorter passphrase",
        )
    return raw


class UserStore:
    """The users file: add, change, remove, list and verify users."""

    _dummy_hashes: dict[int, bytes] = {}  # noqa: RUF012 - per-rounds cache, shared on purpose
    _dummy_lock = threading.Lock()

    def __init__(self, path: Path, *, rounds: int = 12) -> None:
        self.path = Path(path)
        self.rounds = rounds

    @classmethod
    def from_settings(cls, settings: Settings) -> UserStore:
        return cls(settings.users_path)

    # ---- file
    def _load(self) -> UsersFile:
        if not self.path.exists():
            return UsersFile()
        data = read_yaml(self.path)
        if data is None:
            return UsersFile()
        if not isinstance(data, dict):
            raise DataValidationError(
                f"{self.path}: expected a mapping with a 'users' list",
                hint="see `coachbot users add --help`",
            )
        return validate_model(self.path, data, UsersFile)

    def _save(self, data: UsersFile) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(
            {"users": [u.model_dump(mode="json", exclude_defaults=True) for u in data.users]},
            sort_keys=False,
            allow_unicode=True,
        )
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.chmod(self.path, 0o600)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[UsersFile]:
        """Load, let the caller change, and save the file, with other writers kept out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        with os.fdopen(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600), "r+") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._load()
                yield data
                self._save(data)
            finally:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _find(data: UsersFile, identifier: str) -> UserEntry | None:
        key = identifier.strip().casefold()
        return next((u for u in data.users if u.identifier.casefold() == key), None)

    def _hash(self, password: str) -> str:
        raw = _check_password(password)
        return bcrypt.hashpw(raw, bcrypt.gensalt(self.rounds)).decode("ascii")

    def _unknown(self, identifier: str) -> CoachbotError:
        return CoachbotError(
            f"no user {identifier!r} in {self.path}", hint="see `coachbot users list`"
        )

    # ---- API
    def add(self, identifier: str, password: str, role: str) -> UserInfo:
        """Add a user; refuses duplicates, short passwords and unknown roles."""
        try:
            check_identifier(identifier)
        except ValueError as exc:
            raise CoachbotError(f"invalid user name {identifier!r}: {exc}") from exc
        if role not in ROLES:
            raise CoachbotError(f"unknown role {role!r}", hint=f"one of: {', '.join(ROLES)}")
        password_hash = self._hash(password)
        with self._locked() as data:
            if self._find(data, identifier) is not None:
                raise CoachbotError(
                    f"user {identifier!r} already exists in {self.path}",
                    hint="choose another name, or `coachbot users remove` it first",
                )
            entry = UserEntry(
                identifier=identifier,
                password_hash=password_hash,
                role=role,  # type: ignore[arg-type]
                created_at=datetime.now(UTC).replace(microsecond=0),
            )
            data.users.append(entry)
        return _info(entry)

    def set_password(self, identifier: str, password: str) -> None:
        password_hash = self._hash(password)
        with self._locked() as data:
            entry = self._find(data, identifier)
            if entry is None:
                raise self._unknown(identifier)
            entry.password_hash = password_hash

    def set_groups(self, identifier: str, groups: list[str]) -> UserInfo:
        """Replace a user's groups (an empty list clears them)."""
        try:
            clean = sorted({check_identifier(g) for g in groups})
        except ValueError as exc:
            raise CoachbotError(f"invalid group name: {exc}") from exc
        with self._locked() as data:
            entry = self._find(data, identifier)
            if entry is None:
                raise self._unknown(identifier)
            entry.groups = clean
        return _info(entry)

    def remove(self, identifier: str) -> UserInfo:
        with self._locked() as data:
            entry = self._find(data, identifier)
            if entry is None:
                raise self._unknown(identifier)
            data.users.remove(entry)
        return _info(entry)

    def list(self) -> list[UserInfo]:
        return [_info(u) for u in self._load().users]

    def get(self, identifier: str) -> UserInfo | None:
        entry = self._find(self._load(), identifier)
        return _info(entry) if entry else None

    def has_users(self) -> bool:
        return bool(self._load().users)

    def _dummy_hash(self) -> bytes:
        with self._dummy_lock:
            if self.rounds not in self._dummy_hashes:
                self._dummy_hashes[self.rounds] = bcrypt.hashpw(
                    secrets.token_bytes(16), bcrypt.gensalt(self.rounds)
                )
            return self._dummy_hashes[self.rounds]

    def verify(self, identifier: str, password: str) -> UserInfo | None:
        """The user if the password matches, else None. Always spends one bcrypt check, so an
        unknown name takes as long as a wrong password."""
        entry = self._find(self._load(), identifier) if identifier else None
        raw = (password or "").encode("utf-8")
        too_long = len(raw) > MAX_PASSWORD_BYTES
        stored = entry.password_hash.encode("ascii") if entry else self._dummy_hash()
        matches = bcrypt.checkpw(raw[:MAX_PASSWORD_BYTES], stored)
        if entry is None or too_long or not raw or not matches:
            return None
        return _info(entry)


def login_required(settings: Settings) -> bool:
    """COACHBOT_AUTH: on → True, off → False, auto → the users file has at least one user.

    A malformed users file raises DataValidationError rather than opening the app to everyone.
    """
    if settings.auth == "on":
        return True
    if settings.auth == "off":
        return False
    return UserStore(settings.users_path).has_users()


def ensure_auth_secret(settings: Settings) -> str:
    """The secret Chainlit signs login tokens with.

    ``CHAINLIT_AUTH_SECRET`` from the environment if set; otherwise the one kept in
    ``<data_dir>/.chainlit_auth_secret`` (created once, mode 0600), so logins survive restarts.
    The caller puts it in ``os.environ["CHAINLIT_AUTH_SECRET"]`` for Chainlit. Never logged.
    """
    from_env = os.environ.get("CHAINLIT_AUTH_SECRET", "").strip()
    if from_env:
        return from_env
    path = Path(settings.data_dir) / AUTH_SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            existing = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            if path.stat().st_mode & 0o077:
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o600)
            return existing
        secret = secrets.token_urlsafe(48)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{AUTH_SECRET_FILE}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secret + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            if existing == "" and path.exists() and path.stat().st_size == 0:
                os.replace(tmp, path)  # an empty file left behind: replace it
            else:
                try:
                    os.link(tmp, path)  # fails if another process created it meanwhile
                except FileExistsError:
                    continue
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return secret
    raise CoachbotError(f"cannot create {path}", hint="set CHAINLIT_AUTH_SECRET instead")
