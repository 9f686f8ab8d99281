"""Who may use the console: a one-time start token, access keys from --credentials, and the session they give.

The start token (as Jupyter's) is printed in the start URL and works once: opening it sets the session cookie. With
--credentials a person signs in with an access key id and its secret from that file. The session cookie is
`NONCE.ISSUED.SIGNATURE`, signed (HMAC-SHA256) with a secret minted when the process starts: nothing is stored, and
a restart ends every session. A POST form's CSRF token is the HMAC of the session, so a token from one session is
worthless in another and a page of another site cannot know it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

COOKIE = "edgelabels_console"
SESSION_S = 12 * 3600  # a working day; then the start URL of a new start, or a sign-in


class ConsoleAuth:
    def __init__(self, credentials: str | None = None):
        from edgelabels.serve.sigv4 import read_credentials

        self.keys = read_credentials(credentials) if credentials else None
        self._secret = secrets.token_bytes(32)
        self._start_token: str | None = secrets.token_urlsafe(32)
        self._lock = threading.Lock()
        self.start_path = f"/console/?token={self._start_token}"

    def take_start_token(self, token: str) -> bool:
        """True the first time the right token is given; it is spent then."""
        with self._lock:
            if self._start_token is None or not hmac.compare_digest(token.encode(), self._start_token.encode()):
                return False
            self._start_token = None
            return True

    def check_key(self, key_id: str, secret: str) -> bool:
        if not self.keys:
            return False
        expected = self.keys.get(key_id)
        # Compared even for an unknown key id, so the time taken does not say which ids exist.
        matches = hmac.compare_digest(secret.encode(), (expected or secrets.token_urlsafe(32)).encode())
        return matches and expected is not None

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        value = f"{secrets.token_urlsafe(16)}.{int(time.time())}"
        return f"{value}.{self._sign('session', value)}"

    def session(self, cookie: str | None) -> str | None:
        """The session the cookie carries, or None when it is missing, forged or expired."""
        if not cookie or cookie.count(".") != 2:
            return None
        value, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature.encode(), self._sign("session", value).encode()):
            return None
        issued = value.rsplit(".", 1)[1]
        if not issued.isdigit() or time.time() - int(issued) > SESSION_S:
            return None
        return cookie

    def csrf_token(self, session: str) -> str:
        return self._sign("csrf", session)

    def check_csrf(self, session: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), self.csrf_token(session).encode())
