"""Chainlit element storage on the local disk, so pictures and cited passages survive a restart.

Chainlit's SQL data layer keeps elements (the mood curve, the cited passages) only through a
storage client; without one they vanish from the thread history. This client writes each file
under ``<data_dir>/files`` by a hash of its key and serves it at ``/coachbot/files/<hash>``
(a route added to Chainlit's server by :mod:`bot.web.files_route`, which serves a file only to
the user of its thread, or to a trainer). Hashes are unguessable and cannot name a path;
:class:`FileOwners` says whose thread a file belongs to.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainlit.data.storage_clients.base import BaseStorageClient
from sqlalchemy import Engine, text

from bot.store.sessions import _make_engine

URL_PREFIX = "/coachbot/files"
_NAME = re.compile(r"^[0-9a-f]{40}$")


def _name(object_key: str) -> str:
    return hashlib.sha1(object_key.encode("utf-8")).hexdigest()


class LocalStorageClient(BaseStorageClient):
    """Stores element files in a directory; read URLs point at :func:`add_file_route`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, name: str) -> Path | None:
        """The file for a served name, or None when the name is not one of ours."""
        if not _NAME.match(name):
            return None
        path = self.root / name
        return path if path.is_file() else None

    async def upload_file(
        self,
        object_key: str,
        data: bytes | str,
        mime: str = "application/octet-stream",
        overwrite: bool = True,
        content_disposition: str | None = None,
    ) -> dict[str, Any]:
        name = _name(object_key)
        path = self.root / name
        if path.exists() and not overwrite:
            return {"object_key": object_key, "url": f"{URL_PREFIX}/{name}"}
        payload = data.encode("utf-8") if isinstance(data, str) else data
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
        (self.root / f"{name}.mime").write_text(mime or "application/octet-stream")
        return {"object_key": object_key, "url": f"{URL_PREFIX}/{name}"}

    async def delete_file(self, object_key: str) -> bool:
        name = _name(object_key)
        removed = False
        for path in (self.root / name, self.root / f"{name}.mime"):
            if path.exists():
                path.unlink()
                removed = True
        return removed

    async def get_read_url(self, object_key: str) -> str:
        return f"{URL_PREFIX}/{_name(object_key)}"

    async def close(self) -> None:
        return None

    def mime_of(self, name: str) -> str:
        sidecar = self.root / f"{name}.mime"
        return sidecar.read_text().strip() if sidecar.exists() else "application/octet-stream"


@dataclass(frozen=True)
class FileOwner:
    """The Chainlit thread a kept file belongs to, and the login name of that thread's user."""

    thread_id: str | None
    user_identifier: str | None


class FileOwners:
    """Which thread (and user) a kept file belongs to, from Chainlit's ``elements`` and
    ``threads`` tables (in the session database, which coachbot creates)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def _connect(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = _make_engine(self.url)
            return self._engine

    def owner(self, name: str) -> FileOwner | None:
        """The owner of the file served as ``name``, or None when no element names it."""
        if not _NAME.match(name):
            return None
        query = text(
            'SELECT e."threadId", t."userIdentifier" FROM elements e '
            'LEFT JOIN threads t ON t."id" = e."threadId" WHERE e."url" = :url LIMIT 1'
        )
        with self._connect().connect() as conn:
            row = conn.execute(query, {"url": f"{URL_PREFIX}/{name}"}).first()
        if row is None:
            return None
        thread_id, user = row
        return FileOwner(str(thread_id) if thread_id else None, user)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
