"""Kling's per-request HS256 JWT, checked as the real API does: iss = access key, exp, nbf, signature."""

from __future__ import annotations

from dataclasses import dataclass

import jwt

LEEWAY_SECONDS = 5.0  # clock skew tolerated on exp and nbf


@dataclass(frozen=True)
class AuthFailure:
    code: int  # Kling's 1000-1004
    message: str


def check(authorization: str, access_key: str, secret_key: str) -> AuthFailure | None:
    """None when the Authorization header carries a valid token for this account."""
    if not authorization.strip():
        return AuthFailure(1001, "Authorization is empty")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return AuthFailure(1002, "Authorization is invalid: expected 'Bearer <jwt>'")
    try:
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
    except jwt.PyJWTError:
        return AuthFailure(1002, "Authorization is invalid: not a JWT")
    if claims.get("iss") != access_key:
        return AuthFailure(1000, "Authentication failed: unknown access key in iss")
    try:
        jwt.decode(
            token.strip(),
            secret_key,
            algorithms=["HS256"],
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "exp", "nbf"]},
        )
    except jwt.ExpiredSignatureError:
        return AuthFailure(1004, "Authorization has expired")
    except jwt.ImmatureSignatureError:
        return AuthFailure(1003, "Authorization is not yet valid")
    except jwt.PyJWTError as exc:
        return AuthFailure(1002, f"Authorization is invalid: {exc}")
    return None
