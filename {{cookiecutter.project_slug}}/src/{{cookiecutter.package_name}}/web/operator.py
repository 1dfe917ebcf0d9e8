"""The operator's key: it guards what only an operator should do, apart from the job API that
clients use: the dead letters, and the dashboard if the project has one.

Closed by default: while OPERATOR_KEY is unset every operator route answers 403 naming the setting,
so a forgotten setting never leaves replay, delete and purge open to whoever reaches the port.
The comparison takes constant time, so response timing does not reveal how much of a guess was
right.
"""

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import APIKeyHeader

from ..settings import GENERATE_KEY, Settings
from .deps import SettingsDep

HEADER = "X-Operator-Key"
# auto_error=False: a missing key is our 401 with our message, not FastAPI's 403.
operator_key_header = APIKeyHeader(name=HEADER, auto_error=False, scheme_name="OperatorKey")

NOT_SET = (
    "OPERATOR_KEY is not set, so the operator endpoints stay closed: set it on the web "
    f"(generate one with {GENERATE_KEY})"
)


def operator_key(settings: Settings) -> str:
    """The configured key; a 403 that says what to set when there is none."""
    if settings.operator_key is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, NOT_SET)
    return settings.operator_key.get_secret_value()


def is_operator_key(given: str, key: str) -> bool:
    return secrets.compare_digest(given.encode(), key.encode())


async def require_operator_key(
    settings: SettingsDep, given: Annotated[str | None, Depends(operator_key_header)]
) -> None:
    key = operator_key(settings)
    if given is None or not is_operator_key(given, key):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"missing or invalid operator key: send OPERATOR_KEY in the {HEADER} header",
            headers={"WWW-Authenticate": "OperatorKey"},
        )
