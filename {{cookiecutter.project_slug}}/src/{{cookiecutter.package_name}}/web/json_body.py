"""Request bodies parsed as strict JSON: every router with JSON bodies uses `StrictJsonRoute`.

Starlette parses with `json.loads`, which lets NaN, Infinity and lone surrogates in; see
json_values. Here they are a 422 ("JSON decode error", with the reason) before any model sees them.
tests/unit/test_api.py checks that every route taking a JSON body has this class.
"""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from ..json_values import strict_loads


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
