"""Bearer tokens: who a request is, compared in constant time.

With ``SWITCHBOARD_API_TOKEN`` set (one token, or several separated by commas) every ``/api``
route needs ``Authorization: Bearer <token>``; each token is an owner, known by a hash of it so
that tokens never reach the database. The check is FastAPI's ``HTTPBearer`` scheme, so the
OpenAPI document declares it, and a presented token is compared with every known one by
``hmac.compare_digest`` — the time taken says nothing of how much of a token was right.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

# The scheme as OpenAPI declares it; a missing or non-bearer header yields None (the 401 is
# ours, with a sentence and WWW-Authenticate).
BEARER = HTTPBearer(auto_error=False, description="One of SWITCHBOARD_API_TOKEN's tokens.")


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    scheme, _, token = (header or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def owner_id(token: str) -> str:
    """A token's owner id: a hash, so tokens never reach the database."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


class Tokens:
    """The server's tokens; empty means the API is open (no owners)."""

    def __init__(self, tokens: list[str]) -> None:
        self._known = [(t.encode(), owner_id(t)) for t in tokens]

    def __bool__(self) -> bool:
        return bool(self._known)

    def owner(self, token: str) -> str | None:
        """The owner of ``token``, or None; every known token is compared, in constant time."""
        presented, found = token.encode(), None
        for known, who in self._known:
            if hmac.compare_digest(presented, known):
                found = who
        return found

    def sign(self, token: str, sha256: str) -> str:
        """A signature that lets a link fetch one artifact without a header (a chat client
        shows a markdown image by URL alone): an HMAC of the hash under the token itself, so it
        is good as long as the token is, and only for its owner's artifact."""
        return hmac.new(token.encode(), sha256.encode(), hashlib.sha256).hexdigest()[:32]

    def link_owner(self, sha256: str, sig: str) -> str | None:
        """The owner whose token signed ``sig`` for ``sha256`` (:meth:`sign`), or None."""
        found = None
        for known, who in self._known:
            if hmac.compare_digest(self.sign(known.decode(), sha256), sig):
                found = who
        return found

    def header_ok(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header value passes (checked before the body is read)."""
        if not self:
            return True
        token = bearer(header)
        return token is not None and self.owner(token) is not None

    def require(self, credentials: HTTPAuthorizationCredentials | None) -> str | None:
        """The owner of a request (None when the API is open), or 401 with WWW-Authenticate."""
        if not self:
            return None
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise HTTPException(401, "a bearer token is required", challenge)
        found = self.owner(credentials.credentials.strip())
        if found is None:
            raise HTTPException(401, "invalid token", challenge)
        return found
