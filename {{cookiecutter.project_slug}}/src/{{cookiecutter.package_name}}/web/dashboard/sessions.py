"""Dashboard sessions: a random token in the browser's cookie, its digest in Redis with a lifetime.

A session ends when DASHBOARD_SESSION_LIFETIME runs out (Redis expires the record) or when its
browser logs out (the record is deleted), so a cookie copied before either stops working at once.
The digest is keyed with OPERATOR_KEY: Redis never holds a usable token, and a new key ends every
session.
"""

import hashlib
import hmac
import secrets

from ...queue import OperatorSessions

COOKIE = "dashboard_session"
TOKEN_BYTES = 32
LONGEST_TOKEN = 100  # a cookie longer than any token we make is not looked up


def digest(key: str, token: str) -> str:
    return hmac.new(key.encode(), token.encode(), hashlib.sha256).hexdigest()


async def start(sessions: OperatorSessions, key: str, lifetime: int) -> str:
    """A new session's token, valid for `lifetime` seconds."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    await sessions.open_session(digest(key, token), lifetime)
    return token


async def is_open(sessions: OperatorSessions, key: str, token: str) -> bool:
    if not token or len(token) > LONGEST_TOKEN:
        return False
    return await sessions.session_open(digest(key, token))


async def end(sessions: OperatorSessions, key: str, token: str) -> None:
    if token and len(token) <= LONGEST_TOKEN:
        await sessions.close_session(digest(key, token))
