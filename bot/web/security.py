"""Security headers on every HTTP response of the app: a Content-Security-Policy, no framing.

The second wall behind escaping (``bot.rendering``): should markup ever reach the page, the
browser still loads no remote image, script, style or font, sends nothing to another host and
lets no other site frame the app. What the page needs stays allowed: Chainlit's own bundle, its
two inline scripts (by their hashes, read from the page Chainlit serves), inline styles, images
from the app and ``data:``/``blob:`` URLs, and the socket to the app itself.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)


def script_hashes(html: str) -> list[str]:
    """CSP sources (``'sha256-...'``) for the inline scripts of ``html``."""
    hashes = []
    for body in _INLINE_SCRIPT.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
    return sorted(set(hashes))


def content_security_policy(inline_script_hashes: list[str]) -> str:
    """The policy: this origin only, and ``data:``/``blob:`` for images and media."""
    directives = {
        "default-src": "'self'",
        "script-src": " ".join(["'self'", *inline_script_hashes]),
        "style-src": "'self' 'unsafe-inline'",  # React and Radix set inline styles
        "img-src": "'self' data: blob:",
        "media-src": "'self' data: blob:",
        "font-src": "'self' data:",
        "connect-src": "'self'",  # the socket.io websocket to this origin included (CSP3)
        "worker-src": "'self' blob:",
        "frame-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'self'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


SECURITY_HEADERS = {
    "X-Frame-Options": "SAMEORIGIN",  # frame-ancestors for browsers without CSP level 2
    "X-Content-Type-Options": "nosniff",
}


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response (websockets pass through)."""

    def __init__(self, app: ASGIApp, policy: str) -> None:
        self.app = app
        self.headers = {"Content-Security-Policy": policy, **SECURITY_HEADERS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def chainlit_policy() -> str:
    """The policy for the page Chainlit serves now (its inline scripts depend on its config)."""
    from chainlit.config import config
    from chainlit.server import get_html_template

    return content_security_policy(script_hashes(get_html_template(config.run.root_path)))


def install_security_headers(server: Any = None) -> None:
    """Put :class:`SecurityHeaders` around Chainlit's FastAPI app (``server``), once.

    Called from the startup hook. Starlette has built its middleware stack by then (it refuses
    ``add_middleware``), so the middleware wraps that stack as its outermost layer: every
    route, static file and error page (a 500 from Starlette's own error middleware too) gets
    the headers. A stack not built yet is built here, the way Starlette would."""
    if server is None:
        from chainlit.server import app as server
    if getattr(server.state, "security_headers", False):
        return
    stack = server.middleware_stack or server.build_middleware_stack()
    server.middleware_stack = SecurityHeaders(stack, chainlit_policy())
    server.state.security_headers = True
