"""Chainlit element storage on the local disk, so pictures and cited passages survive a restart.

Chainlit's SQL data layer keeps elements (the mood curve, the cited passages) only through a
storage client; without one they vanish from the thread history. This client writes each file
under ``<data_dir>/files`` by a hash of its key and serves it at ``/coachbot/files/<hash>``
(a route added to Chainlit's server). Hashes are unguessable and cannot name a path.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from chainlit.data.storage_clients.base import BaseStorageClient

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


def add_file_route(client: LocalStorageClient) -> None:
    """Serve the client's files from Chainlit's server (before its catch-all page route)."""
    from chainlit.server import app as server
    from fastapi import HTTPException
    from fastapi.responses import FileResponse

    async def serve_file(name: str) -> FileResponse:
        path = client.path_for(name)
        if path is None:
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(
            path,
            media_type=client.mime_of(name),
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
        )

    server.add_api_route(f"{URL_PREFIX}/{{name}}", serve_file, methods=["GET"])
    routes = server.router.routes
    routes.insert(0, routes.pop())  # ahead of Chainlit's "/{full_path:path}" page route
