"""Security headers on every answer: no sniffing, no framing, no referrer to other sites, and a
Content-Security-Policy.

HTML pages get ``PAGE_CSP`` (scripts and styles only from the relay's own files; video and images
also from https CDNs), everything else ``OTHER_CSP`` (nothing may load). An answer that sets its own
policy keeps it (``/files`` sandboxes downloads, ``/login`` allows its style by hash).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "media-src 'self' https: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
OTHER_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # not no-referrer: under it a browser sends "Origin: null" with a same-origin form POST
    (b"referrer-policy", b"same-origin"),
]
_CSP = b"content-security-policy"
_PAGE, _OTHER = PAGE_CSP.encode(), OTHER_CSP.encode()


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding the headers above to each response start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in _ALWAYS if name not in names]
                if _CSP not in names:
                    html = any(
                        n.lower() == b"content-type" and v.startswith(b"text/html") for n, v in headers
                    )
                    headers.append((_CSP, (PAGE_CSP if html else OTHER_CSP).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
