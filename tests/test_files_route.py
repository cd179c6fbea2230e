"""The kept-files route (``/coachbot/files/<sha1>``, bot/web/files_route.py) serves a file only
to the user of its thread, or to a trainer when the thread is a saved session; anyone else gets
404 as for a missing file, and a request without a login 401.

The app's startup hook configures Chainlit's real server; files are stored by the app's storage
client under the object keys Chainlit's SQL data layer uses, with the element and thread rows
that data layer writes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import chainlit as cl
import pytest
from chainlit.auth import create_jwt
from chainlit.config import config
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from bot.service import Services
from bot.store.files import URL_PREFIX, LocalStorageClient
from bot.store.sessions import SessionStore
from bot.store.users import UserStore
from bot.web import app

from .conftest import make_settings

PASSWORD = "correct horse"
USERS = {"alice": "trainee", "bob": "agent", "tara": "trainer"}


@dataclass
class Kept:
    url: str
    content: bytes


@pytest.fixture
def pristine(monkeypatch) -> Iterator[None]:
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


def _keep_file(settings, owner: str | None, *, saved_session: bool) -> Kept:
    """A file in a thread of ``owner``, as Chainlit's data layer keeps an element."""
    engine = create_engine(settings.database)
    thread_id, element_id, user_id = (str(uuid.uuid4()) for _ in range(3))
    with engine.begin() as conn:
        if owner is not None:
            conn.execute(
                text(
                    "INSERT OR IGNORE INTO users (id, identifier, metadata) "
                    "VALUES (:id, :who, '{}')"
                ),
                {"id": user_id, "who": owner},
            )
            user_id = conn.execute(
                text("SELECT id FROM users WHERE identifier = :who"), {"who": owner}
            ).scalar_one()
        conn.execute(
            text(
                'INSERT INTO threads (id, name, "userId", "userIdentifier") '
                "VALUES (:id, 'chat', :uid, :who)"
            ),
            {"id": thread_id, "uid": user_id if owner else None, "who": owner},
        )
    content = f"mood curve of {owner} {element_id}".encode()
    client = LocalStorageClient(settings.data_dir / "files")
    uploaded = asyncio.run(
        client.upload_file(f"{user_id}/{element_id}/Mood curve", content, mime="image/svg+xml")
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO elements (id, "threadId", type, url, name, "objectKey", mime) '
                "VALUES (:id, :thread, 'image', :url, 'Mood curve', :key, 'image/svg+xml')"
            ),
            {"id": element_id, "thread": thread_id, "url": uploaded["url"], "key": "k"},
        )
    engine.dispose()
    if saved_session:
        app.services().store.start_session("practice", user=owner, thread_id=thread_id)
    return Kept(uploaded["url"], content)


def _start(tmp_path, monkeypatch, **overrides):
    settings = make_settings(tmp_path, **overrides)
    users = UserStore(settings.users_path, rounds=4)
    for name, role in USERS.items():
        users.add(name, PASSWORD, role)
    svc = Services(settings, store=SessionStore(settings.database))
    monkeypatch.setattr(svc, "warm_up", lambda: None)
    app.use_services(svc)
    asyncio.run(config.code.on_app_startup())
    # Chainlit's data layer (async, bound to one event loop) is not what is tested here: with
    # none, Chainlit takes the user from the login token alone.
    monkeypatch.setattr(config.code, "data_layer", None)
    return settings


def _as(who: str | None) -> TestClient:
    from chainlit.server import app as server

    client = TestClient(server)
    if who is not None:
        token = create_jwt(cl.User(identifier=who, metadata={"role": USERS[who]}))
        client.cookies.set("access_token", token)
    return client


def test_a_file_is_served_to_its_user_and_a_reviewing_trainer_only(tmp_path, monkeypatch, pristine):
    settings = _start(tmp_path, monkeypatch)
    alices = _keep_file(settings, "alice", saved_session=True)
    bobs = _keep_file(settings, "bob", saved_session=True)

    own = _as("alice").get(alices.url)
    assert own.status_code == 200 and own.content == alices.content
    assert own.headers["content-type"].startswith("image/svg+xml")
    assert _as("bob").get(bobs.url).content == bobs.content

    other = _as("alice").get(bobs.url)  # another user's file: as if it did not exist
    assert other.status_code == 404
    assert other.json() == _as("alice").get(f"{URL_PREFIX}/{'0' * 40}").json()
    assert _as("bob").get(alices.url).status_code == 404

    reviewing = _as("tara").get(bobs.url)  # a trainer reviewing a saved session
    assert reviewing.status_code == 200 and reviewing.content == bobs.content

    assert _as(None).get(alices.url).status_code == 401  # no login, no file


def test_a_trainer_gets_only_files_of_saved_sessions(tmp_path, monkeypatch, pristine):
    settings = _start(tmp_path, monkeypatch)
    unsaved = _keep_file(settings, "alice", saved_session=False)
    nobodys = _keep_file(settings, None, saved_session=False)
    assert _as("tara").get(unsaved.url).status_code == 404
    assert _as("tara").get(nobodys.url).status_code == 404
    assert _as("alice").get(unsaved.url).status_code == 200


def test_a_demoted_trainer_loses_review_access_at_once(tmp_path, monkeypatch, pristine):
    settings = _start(tmp_path, monkeypatch)
    bobs = _keep_file(settings, "bob", saved_session=True)
    assert _as("tara").get(bobs.url).status_code == 200
    users = UserStore(settings.users_path, rounds=4)
    users.remove("tara")
    users.add("tara", PASSWORD, "trainee")  # the token still says trainer; the file does not
    assert _as("tara").get(bobs.url).status_code == 404


def test_a_file_on_disk_without_its_element_is_not_served(tmp_path, monkeypatch, pristine):
    settings = _start(tmp_path, monkeypatch)
    client = LocalStorageClient(settings.data_dir / "files")
    stray = asyncio.run(client.upload_file("someone/else", b"secret", mime="text/plain"))
    assert _as("alice").get(stray["url"]).status_code == 404


def test_with_login_off_every_file_is_served(tmp_path, monkeypatch, pristine):
    settings = _start(tmp_path, monkeypatch, auth="off")
    kept = _keep_file(settings, None, saved_session=False)
    assert _as(None).get(kept.url).content == kept.content
