"""Who may use ``/__mock/``: anyone, unless ``--admin-token`` is set; then a request shows
the token in a header (``Authorization: Bearer`` or ``X-Mock-Admin-Token``), or carries the
dashboard's session cookie.

A browser cannot send a header when it navigates, and a token in a URL's query ends up in
access logs and the browser's history. So the dashboard's login sends the token once, in a
header, to ``POST /__mock/session``, which answers with a cookie: ``HttpOnly`` (the page's
scripts never see it), ``SameSite=Strict``, scoped to ``/__mock``, and holding not the token
but a keyed hash of it, so any worker (and a restarted mock with the same token) accepts it
with nothing stored, and changing the token ends every session. A request that changes
something (POST, DELETE) on the strength of the cookie must also carry
``X-Mock-Dashboard: 1``, which a page of another origin cannot add without the mock's
consent (CORS): the cookie alone never deletes anything.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import HTTPConnection

from ..core.formats import bearer_token

COOKIE_PREFIX = "qwen_mock_admin_"
DASHBOARD_HEADER = "x-mock-dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD"})


class AdminError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class AdminGate:
    def __init__(self, token: str | None) -> None:
        self.token = token
        # What the session cookie holds: a keyed hash of the token, never the token.
        self.session = (hmac.new(token.encode(), b"qwen-image-mock dashboard session", hashlib.sha256).hexdigest()
                        if token else None)

    @property
    def is_open(self) -> bool:
        return self.token is None

    @staticmethod
    def cookie_name(connection: HTTPConnection) -> str:
        # Cookies ignore ports: two mocks on one host must not overwrite each other's.
        server = connection.scope.get("server") or ("", 0)
        return f"{COOKIE_PREFIX}{server[1] or 0}"

    def given_token(self, connection: HTTPConnection) -> str | None:
        return (connection.headers.get("x-mock-admin-token")
                or bearer_token(connection.headers.get("authorization")))

    def has_session(self, connection: HTTPConnection) -> bool:
        if self.session is None:
            return False
        cookie = connection.cookies.get(self.cookie_name(connection))
        return cookie is not None and hmac.compare_digest(cookie.encode("utf-8", "surrogateescape"),
                                                          self.session.encode())

    def token_matches(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token.encode())

    def check(self, connection: HTTPConnection, method: str = "GET") -> None:
        """Let the request through, or raise ``AdminError``: 401 without credentials, 403 with
        wrong ones."""
        if self.token is None:
            return
        given = self.given_token(connection)
        if given is None and self.has_session(connection):
            if method not in SAFE_METHODS and connection.headers.get(DASHBOARD_HEADER) != "1":
                raise AdminError(403, "admin_header_required",
                                 f"A change made with the dashboard's session cookie needs the header "
                                 f"{DASHBOARD_HEADER}: 1 (or the admin token in a header).")
            return
        if given is None:
            raise AdminError(401, "admin_token_required",
                             "The /__mock/ endpoints need the admin token: Authorization: Bearer <token> "
                             "or X-Mock-Admin-Token: <token> (the dashboard asks for it once and keeps a "
                             "session cookie).")
        if not self.token_matches(given):
            raise AdminError(403, "admin_token_invalid", "Wrong admin token for the /__mock/ endpoints.")

    def session_cookie(self, connection: HTTPConnection, end: bool = False) -> str:
        """The ``Set-Cookie`` value that starts (or ends) a dashboard session."""
        root = connection.scope.get("root_path", "")
        value = "" if end else self.session
        attributes = [f"{self.cookie_name(connection)}={value}", f"Path={root}/__mock", "HttpOnly",
                      "SameSite=Strict"]
        if connection.url.scheme == "https":
            attributes.append("Secure")
        if end:
            attributes.append("Max-Age=0")
        return "; ".join(attributes)
