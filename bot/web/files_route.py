"""The route that serves kept element files (``/coachbot/files/<sha1>``) to whoever may see them.

With login on, a file is served to the user of the thread it belongs to, and to a trainer when
that thread is a saved session (trainers review every saved session, see *Review sessions*).
Anyone else gets 404, as for a file that does not exist; a request without a valid login gets
401 (Chainlit's ``get_current_user``). With login off there are no users, and every file is
served. The user's role is read from the users file on each request, so a changed role counts
at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chainlit.auth import get_current_user
from fastapi import Depends, HTTPException
from fastapi.responses import FileResponse

from bot.config import Settings
from bot.store.files import URL_PREFIX, FileOwners, LocalStorageClient
from bot.store.users import UserStore

log = logging.getLogger("coachbot.files")


@dataclass
class FileAccess:
    """Who may read a kept file: its thread's user, or a trainer for a reviewable thread."""

    owners: FileOwners
    role_of: Callable[[str], str | None]  # the role a login name has now
    reviewable: Callable[[str], bool]  # whether trainers may review this thread

    def allowed(self, identifier: str, name: str) -> bool:
        owner = self.owners.owner(name)
        if owner is None:
            return False
        if owner.user_identifier is not None and owner.user_identifier == identifier:
            return True
        if owner.thread_id is None or self.role_of(identifier) != "trainer":
            return False
        return self.reviewable(owner.thread_id)


def file_access(settings: Settings, reviewable: Callable[[str], bool]) -> FileAccess:
    """The access rule over the session database and the users file of ``settings``."""
    users = UserStore(settings.users_path)

    def role_of(identifier: str) -> str | None:
        found = users.get(identifier)
        return found.role if found else None

    return FileAccess(FileOwners(settings.database), role_of, reviewable)


def add_file_route(client: LocalStorageClient, access: FileAccess) -> None:
    """Serve the client's files from Chainlit's server (before its catch-all page route)."""
    from chainlit.server import app as server

    async def serve_file(name: str, user: Any = Depends(get_current_user)) -> FileResponse:
        path = client.path_for(name)
        if path is None or (user is not None and not await _allowed(access, user, name)):
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(
            path,
            media_type=client.mime_of(name),
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
        )

    server.add_api_route(f"{URL_PREFIX}/{{name}}", serve_file, methods=["GET"])
    routes = server.router.routes
    routes.insert(0, routes.pop())  # ahead of Chainlit's "/{full_path:path}" page route


async def _allowed(access: FileAccess, user: Any, name: str) -> bool:
    try:
        return await asyncio.to_thread(access.allowed, user.identifier, name)
    except Exception as exc:  # the database is away: not served, and not a traceback
        log.warning("a kept file was not served: its owner could not be read (%s)", exc)
        return False
