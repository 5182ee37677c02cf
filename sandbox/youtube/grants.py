"""Google OAuth grants: authorization codes, refresh tokens and access tokens.

Tokens are kept as SHA-256 digests (a provider never needs the token itself back), so the sandbox's
database holds nothing a client could replay. Codes and access tokens follow the real clock; only
the quota day, publishAt and upload sessions read YouTube's shifted clock.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sandbox.store import Store

CODE = "youtube_oauth_code"
REFRESH = "youtube_refresh_token"
ACCESS = "youtube_access_token"
CODE_TTL_S = 600.0
ACCESS_TTL_S = 3599
UPLOAD_SCOPE = "https://www.googleapis.com/auth/youtube.upload"
FORCE_SSL_SCOPE = "https://www.googleapis.com/auth/youtube.force-ssl"


class GrantError(Exception):
    """A refused token request: HTTP status, OAuth error code, description."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


@dataclass(frozen=True)
class Grant:
    """What an access token stands for: the Cloud project (client id), the channel and the scopes."""

    project: str
    channel_id: str
    scopes: frozenset[str]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Grants:
    def __init__(self, store: Store) -> None:
        self.store = store

    # Codes ---------------------------------------------------------------------------------------
    def issue_code(
        self,
        *,
        client_id: str,
        channel_id: str,
        redirect_uri: str,
        scopes: list[str],
        challenge: str | None,
        challenge_method: str,
        offline: bool,
    ) -> str:
        code = "4/0A" + secrets.token_urlsafe(48)
        doc = {
            "key": digest(code),
            "client_id": client_id,
            "channel_id": channel_id,
            "redirect_uri": redirect_uri,
            "scopes": scopes,
            "challenge": challenge,
            "challenge_method": challenge_method,
            "offline": offline,
            "expires": time.time() + CODE_TTL_S,
        }
        with self.store.lock:
            self._prune(CODE)
            self.store.put(CODE, digest(code), doc)
        return code

    def redeem_code(
        self, code: str, client_id: str, redirect_uri: str, verifier: str | None
    ) -> dict[str, Any]:
        """The token answer for an authorization code; the code is used up only by a success."""
        with self.store.lock:
            doc = self.store.get(CODE, digest(code))
            if doc is None or doc["expires"] <= time.time() or doc["client_id"] != client_id:
                raise GrantError(400, "invalid_grant", "Bad Request")
            if redirect_uri != doc["redirect_uri"]:
                raise GrantError(
                    400, "invalid_grant", "redirect_uri does not match the authorization request."
                )
            if doc["challenge"] is not None:
                if not verifier:
                    raise GrantError(400, "invalid_grant", "Missing code verifier.")
                if _challenge(verifier, doc["challenge_method"]) != doc["challenge"]:
                    raise GrantError(400, "invalid_grant", "Invalid code verifier.")
            self.store.delete(CODE, digest(code))
            refresh = None
            if doc["offline"]:
                refresh = self.mint_refresh(client_id, doc["channel_id"], doc["scopes"])
            answer = self._access(client_id, doc["channel_id"], doc["scopes"], refresh)
            if refresh is not None:
                answer["refresh_token"] = refresh
            return answer

    # Refresh tokens ------------------------------------------------------------------------------
    def mint_refresh(self, client_id: str, channel_id: str, scopes: list[str]) -> str:
        token = "1//0" + secrets.token_urlsafe(72)
        doc = {
            "key": digest(token),
            "client_id": client_id,
            "channel_id": channel_id,
            "scopes": scopes,
            "revoked": False,
            "created": time.time(),
        }
        self.store.put(REFRESH, digest(token), doc)
        return token

    def refresh(self, token: str, client_id: str) -> dict[str, Any]:
        with self.store.lock:
            doc = self.store.get(REFRESH, digest(token))
            if doc is None or doc["revoked"] or doc["client_id"] != client_id:
                raise GrantError(400, "invalid_grant", "Token has been expired or revoked.")
            return self._access(client_id, doc["channel_id"], doc["scopes"], token)

    def revoke(self, token: str | None) -> int:
        """Revokes one refresh token, or every one: later refreshes get invalid_grant, and the access
        tokens they gave stop working (Google revokes the whole grant)."""
        with self.store.lock:
            wanted = None if token is None else digest(token)
            revoked = set()
            for doc in self._docs(REFRESH):
                if (wanted is None or doc["key"] == wanted) and not doc["revoked"]:
                    self.store.put(REFRESH, doc["key"], {**doc, "revoked": True})
                    revoked.add(doc["key"])
            for doc in self._docs(ACCESS):
                if doc["refresh"] in revoked:
                    self.store.delete(ACCESS, doc["key"])
            return len(revoked)

    # Access tokens -------------------------------------------------------------------------------
    def access(self, token: str) -> Grant | None:
        doc = self.store.get(ACCESS, digest(token)) if token else None
        if doc is None or doc["expires"] <= time.time():
            return None
        return Grant(doc["client_id"], doc["channel_id"], frozenset(doc["scopes"]))

    def _access(
        self, client_id: str, channel_id: str, scopes: list[str], refresh: str | None
    ) -> dict[str, Any]:
        token = "ya29.a0" + secrets.token_urlsafe(96)
        doc = {
            "key": digest(token),
            "client_id": client_id,
            "channel_id": channel_id,
            "scopes": scopes,
            "refresh": None if refresh is None else digest(refresh),
            "expires": time.time() + ACCESS_TTL_S,
        }
        self._prune(ACCESS)
        self.store.put(ACCESS, digest(token), doc)
        return {
            "access_token": token,
            "expires_in": ACCESS_TTL_S,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }

    def _prune(self, kind: str) -> None:
        """Drops expired codes or access tokens, so the store does not grow with every refresh."""
        now = time.time()
        for doc in self._docs(kind):
            if doc["expires"] <= now:
                self.store.delete(kind, doc["key"])

    def _docs(self, kind: str) -> list[dict[str, Any]]:
        """Shallow copies, so the caller may put or delete while going through them."""
        with self.store.lock:
            return [dict(doc) for doc in self.store.iter_raw(kind)]


def _challenge(verifier: str, method: str) -> str:
    if method == "plain":
        return verifier
    hashed = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode()
