"""A stub OAuth2 identity provider on loopback, for Chainlit's generic provider (OAUTH_GENERIC_*): /authorize
sends the browser straight back with a code (no login page), /token swaps the code for an access token,
/userinfo returns the user data set for the next sign-in (``idp.next_user = {...}``), groups claim included."""

from __future__ import annotations

import secrets
import urllib.parse
from http.server import BaseHTTPRequestHandler

from tests.stubs.loopback import LoopbackServer, QuietHandler


class StubIdP(LoopbackServer):
    """Issues codes and tokens for whatever ``next_user`` holds when /authorize is called."""

    thread_name = "stub-idp"

    def __init__(self, *, port: int = 0):
        super().__init__(port=port)
        self.next_user: dict = {}
        self._codes: dict[str, dict] = {}
        self._tokens: dict[str, dict] = {}
        self.requests: list[str] = []

    def env(self, *, identifier: str = "preferred_username") -> dict[str, str]:
        """The app's OAUTH_GENERIC_* variables pointing at this server."""
        return {"OAUTH_GENERIC_CLIENT_ID": "kbchat-test", "OAUTH_GENERIC_CLIENT_SECRET": "stub-secret",
                "OAUTH_GENERIC_AUTH_URL": self.url + "/authorize", "OAUTH_GENERIC_TOKEN_URL": self.url + "/token",
                "OAUTH_GENERIC_USER_INFO_URL": self.url + "/userinfo", "OAUTH_GENERIC_SCOPES": "openid profile",
                "OAUTH_GENERIC_USER_IDENTIFIER": identifier}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(QuietHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                idp.requests.append(url.path)
                if url.path == "/authorize":
                    code = secrets.token_urlsafe(12)
                    idp._codes[code] = dict(idp.next_user)
                    back = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q.get("state", "")})
                    self._raw(302, b"", "text/plain", {"Location": back})
                elif url.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                    user = idp._tokens.get(token)
                    self._json(200, user) if user is not None else self._json(401, {"error": "invalid_token"})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = dict(urllib.parse.parse_qsl(body))
                idp.requests.append(self.path)
                user = idp._codes.pop(form.get("code", ""), None)
                if self.path != "/token" or user is None or form.get("client_secret") != "stub-secret":
                    self._json(400, {"error": "invalid_grant"})
                    return
                token = secrets.token_urlsafe(16)
                idp._tokens[token] = user
                self._json(200, {"access_token": token, "token_type": "bearer"})

        return Handler


__all__ = ["StubIdP"]
