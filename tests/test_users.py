"""Login users: hashed passwords, roles, the users file, the auth settings and `coachbot users`."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import bcrypt
import pytest
import yaml
from typer.testing import CliRunner

from bot.cli import common
from bot.cli import main as cli
from bot.errors import CoachbotError, DataValidationError
from bot.store.users import AUTH_SECRET_FILE, UserStore, ensure_auth_secret, login_required
from tests.conftest import make_settings

runner = CliRunner()
PASSWORD = "correct horse battery"


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    return UserStore(tmp_path / "conf" / "users.yaml", rounds=4)  # cheap hashes for tests


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- the store


def test_add_then_verify(users):
    info = users.add("sam", PASSWORD, "trainee")
    assert (info.identifier, info.role) == ("sam", "trainee")
    assert info.created_at.tzinfo is not None
    found = users.verify("sam", PASSWORD)
    assert found is not None and found.identifier == "sam" and found.role == "trainee"
    assert users.verify("SAM", PASSWORD) is not None  # login names are case-insensitive
    assert users.verify("sam", PASSWORD + "!") is None
    assert users.verify("sam", "") is None
    assert users.verify("nobody", PASSWORD) is None
    assert users.has_users()


def test_the_file_holds_a_bcrypt_hash_never_the_password(users):
    users.add("sam", PASSWORD, "agent")
    text = users.path.read_text()
    assert PASSWORD not in text
    [entry] = yaml.safe_load(text)["users"]
    assert set(entry) == {"identifier", "password_hash", "role", "created_at"}  # no groups: none
    users.set_groups("sam", ["night-shift", "night-shift"])
    [entry] = yaml.safe_load(users.path.read_text())["users"]
    assert entry["groups"] == ["night-shift"] and PASSWORD not in users.path.read_text()
    assert bcrypt.checkpw(PASSWORD.encode(), entry["password_hash"].encode())


def test_file_mode_is_0600_and_writes_leave_no_temp_files(users):
    users.add("sam", PASSWORD, "trainee")
    users.path.chmod(0o644)
    users.add("ali", PASSWORD, "trainer")  # rewritten: 0600 again
    assert mode(users.path) == 0o600
    leftovers = [p.name for p in users.path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_an_unknown_user_still_spends_a_bcrypt_check(users, monkeypatch):
    users.add("sam", PASSWORD, "trainee")
    checks = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: checks.append(h) or real(pw, h))
    assert users.verify("nobody", PASSWORD) is None
    assert users.verify("sam", "wrong password") is None
    assert users.verify("sam", "x" * 100) is None  # longer than bcrypt's 72 bytes
    assert len(checks) == 3
    assert checks[0] != checks[1]  # a dummy hash, not another user's


@pytest.mark.parametrize(
    ("name", "password", "role", "message"),
    [
        ("sam", "short", "trainee", "too short"),
        ("sam", "", "trainee", "empty"),
        ("sam", "        ", "trainee", "empty"),
        ("sam", "é" * 40, "trainee", "too long"),
        ("sam", PASSWORD, "admin", "unknown role 'admin'"),
        ("two words", PASSWORD, "trainee", "spaces"),
        ("", PASSWORD, "trainee", "invalid user name"),
    ],
)
def test_add_refuses_bad_input_with_clear_messages(users, name, password, role, message):
    with pytest.raises(CoachbotError, match=message):
        users.add(name, password, role)
    assert not users.path.exists() or not users.has_users()


def test_add_refuses_a_duplicate_name_in_any_case(users):
    users.add("Sam", PASSWORD, "trainee")
    with pytest.raises(CoachbotError, match="already exists") as dup:
        users.add("sam", PASSWORD, "agent")
    assert "remove" in (dup.value.hint or "")
    assert [u.identifier for u in users.list()] == ["Sam"]


def test_list_set_password_and_remove(users):
    users.add("sam", PASSWORD, "trainee")
    users.add("lee", PASSWORD, "trainer")
    listed = users.list()
    assert [(u.identifier, u.role) for u in listed] == [("sam", "trainee"), ("lee", "trainer")]
    assert all("password_hash" not in u.model_dump() for u in listed)

    users.set_password("sam", "a new passphrase")
    assert users.verify("sam", PASSWORD) is None
    assert users.verify("sam", "a new passphrase") is not None
    with pytest.raises(CoachbotError, match="too short"):
        users.set_password("sam", "short")

    assert users.remove("lee").identifier == "lee"
    assert [u.identifier for u in users.list()] == ["sam"]
    for action in (lambda: users.remove("lee"), lambda: users.set_password("lee", PASSWORD)):
        with pytest.raises(CoachbotError, match="no user 'lee'"):
            action()


def test_a_missing_or_empty_file_has_no_users(users):
    assert users.list() == [] and not users.has_users()
    users.path.parent.mkdir(parents=True)
    users.path.write_text("")
    assert not users.has_users()


def _entry(**changes: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "identifier": "sam",
        "password_hash": bcrypt.hashpw(b"whatever123", bcrypt.gensalt(4)).decode(),
        "role": "trainee",
        "created_at": "2025-01-31T09:00:00Z",
    }
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("users: [unclosed", "invalid YAML"),
        ("- just a list", "expected a mapping"),
        ({"users": [_entry(role="boss")]}, "field 'users[0].role'"),
        ({"users": [_entry(), {"identifier": "lee", "role": "agent"}]}, "users[1].password_hash"),
        ({"users": [_entry(password_hash="hunter2")]}, "not a bcrypt hash"),
        ({"users": [_entry(), _entry(identifier="SAM")]}, "duplicate identifier 'SAM'"),
        ({"users": [_entry(extra=1)]}, "field 'users[0].extra'"),
        ({"people": []}, "field 'people'"),
    ],
)
def test_a_malformed_file_names_the_file_and_field(users, content, expected):
    users.path.parent.mkdir(parents=True)
    text = content if isinstance(content, str) else yaml.safe_dump(content)
    users.path.write_text(text)
    with pytest.raises(DataValidationError) as error:
        users.list()
    assert str(users.path) in str(error.value)
    assert expected in str(error.value)


# --------------------------------------------------------------------------- auth settings


def test_login_required_follows_the_auth_setting(tmp_path):
    auto = make_settings(tmp_path, auth="auto")
    assert login_required(auto) is False  # no users file yet
    UserStore(auto.users_path, rounds=4).add("sam", PASSWORD, "trainee")
    assert login_required(auto) is True
    assert login_required(make_settings(tmp_path, auth="off")) is False
    assert login_required(make_settings(tmp_path / "other", auth="on")) is True


def test_login_required_uses_the_configured_users_file(tmp_path):
    elsewhere = tmp_path / "elsewhere.yaml"
    settings = make_settings(tmp_path, users_file=elsewhere)
    assert settings.users_path == elsewhere
    UserStore(elsewhere, rounds=4).add("sam", PASSWORD, "trainee")
    assert login_required(settings) is True


def test_login_required_fails_closed_on_a_broken_users_file(tmp_path):
    settings = make_settings(tmp_path)
    settings.users_path.parent.mkdir(parents=True)
    settings.users_path.write_text("users: [{identifier: sam}]")
    with pytest.raises(DataValidationError, match=r"users\.yaml"):
        login_required(settings)


def test_auth_secret_from_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "from-env")
    settings = make_settings(tmp_path)
    assert ensure_auth_secret(settings) == "from-env"
    assert not (settings.data_dir / AUTH_SECRET_FILE).exists()


def test_auth_secret_is_created_once_and_reused(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.delenv("CHAINLIT_AUTH_SECRET", raising=False)
    settings = make_settings(tmp_path)
    with caplog.at_level(logging.DEBUG):
        first = ensure_auth_secret(settings)
        second = ensure_auth_secret(settings)
    path = settings.data_dir / AUTH_SECRET_FILE
    assert first == second and len(first) >= 60
    assert path.read_text().strip() == first and mode(path) == 0o600
    captured = capsys.readouterr()
    assert first not in captured.out + captured.err
    assert all(first not in r.getMessage() for r in caplog.records)
    assert [p.name for p in path.parent.iterdir()] == [AUTH_SECRET_FILE]  # no temp files

    path.write_text("")  # an empty file is replaced, not returned
    third = ensure_auth_secret(settings)
    assert third and third != first and path.read_text().strip() == third


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_settings(tmp_path, monkeypatch):
    settings = make_settings(tmp_path)
    monkeypatch.setattr(common, "get_settings", lambda: settings)
    return settings


def test_users_add_with_password_stdin_then_list(cli_settings):
    result = runner.invoke(
        cli.app,
        ["users", "add", "sam", "--role", "trainer", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "Added sam (trainer)" in result.stdout
    assert UserStore(cli_settings.users_path).verify("sam", PASSWORD) is not None
    assert mode(cli_settings.users_path) == 0o600

    listed = runner.invoke(cli.app, ["users", "list", "--json"])
    data = json.loads(listed.stdout)
    assert data["ok"] and [u["identifier"] for u in data["users"]] == ["sam"]
    assert data["users"][0]["role"] == "trainer"
    assert "password_hash" not in listed.stdout and "$2b$" not in listed.stdout


def test_users_add_without_a_terminal_or_stdin_flag_is_a_clear_error(cli_settings):
    result = runner.invoke(cli.app, ["users", "add", "sam", "--role", "agent"])
    assert result.exit_code == 1
    assert "--password-stdin" in result.stderr
    assert not cli_settings.users_path.exists()


def test_users_add_checks_the_role_before_asking_for_a_password(cli_settings):
    result = runner.invoke(
        cli.app, ["users", "add", "sam", "--role", "boss", "--json", "--password-stdin"]
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"].startswith("unknown role 'boss'")


def test_users_add_refuses_duplicates_and_short_passwords_in_one_line(cli_settings):
    args = ["users", "add", "sam", "--role", "agent", "--password-stdin"]
    assert runner.invoke(cli.app, args, input=PASSWORD).exit_code == 0
    duplicate = runner.invoke(cli.app, args, input=PASSWORD)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr
    assert len(duplicate.stderr.strip().splitlines()) == 1
    short = runner.invoke(
        cli.app, ["users", "add", "lee", "-r", "agent", "--password-stdin"], input="abc"
    )
    assert short.exit_code == 1 and "too short" in short.stderr


def test_users_passwd_and_remove(cli_settings):
    UserStore(cli_settings.users_path, rounds=4).add("sam", PASSWORD, "trainee")
    changed = runner.invoke(
        cli.app, ["users", "passwd", "sam", "--password-stdin"], input="brand new secret\n"
    )
    assert changed.exit_code == 0, changed.output
    assert UserStore(cli_settings.users_path).verify("sam", "brand new secret") is not None

    removed = runner.invoke(cli.app, ["users", "remove", "sam", "--json"])
    assert removed.exit_code == 0 and json.loads(removed.stdout)["removed"]["identifier"] == "sam"
    again = runner.invoke(cli.app, ["users", "remove", "sam"])
    assert again.exit_code == 1 and "no user 'sam'" in again.stderr
    empty = runner.invoke(cli.app, ["users", "list"])
    assert "No users" in empty.stdout
