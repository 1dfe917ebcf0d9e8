"""POST /jobs without FastAPI's parameter solving, where the request is one it would accept.

Every job comes through POST /jobs. FastAPI's handler reads the content type through the email
package, and solves the route's parameters (the body, the Idempotency-Key header) generically;
at idle, where every line of code runs cold, that was a fifth of the route's own time. For a
request with `Content-Type: application/json`, an Idempotency-Key that is absent or plainly
valid, and a body that parses (strictly, json_body) and validates as EnqueueRequest, this calls
the endpoint itself with what FastAPI would have passed. Anything else, every error included,
goes through FastAPI's handler as before (the body read once, kept on the request), so answers
are FastAPI's own; the OpenAPI document is the route's as declared.
"""

import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from .json_body import StrictJsonRequest, StrictJsonRoute

KEY_HEADER = b"idempotency-key"
PLAIN_KEY = re.compile(rb"[\x21-\x7e]{1,200}")
"""What the route's IdempotencyKey accepts, as a full match: anything else goes to FastAPI."""


class EnqueueRoute(StrictJsonRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = APIRoute.get_route_handler(self)  # FastAPI's (in the route's effective context)
        dependant = _effective(self).dependant
        body_fields = dependant.body_params
        lean = (
            not dependant.dependencies  # no guards (an API key) to run
            and not dependant.query_params
            and not dependant.path_params
            and not dependant.cookie_params
            and [field.name for field in dependant.header_params] == ["idempotency_key"]
            and len(body_fields) == 1
            and body_fields[0].name == "body"
            and dependant.request_param_name == "request"
            and isinstance(body_fields[0].field_info.annotation, type)
            and issubclass(body_fields[0].field_info.annotation, BaseModel)
            and not dependant.background_tasks_param_name
            and not dependant.response_param_name
        )

        async def strict(request: Request) -> Response:
            return await full(StrictJsonRequest(request.scope, request.receive))

        if not lean:
            return strict
        model: type[BaseModel] = body_fields[0].field_info.annotation
        endpoint = dependant.call
        if endpoint is None:
            return strict

        async def enqueue(request: Request) -> Response:
            scope = request.scope
            content_type = key = None
            for name, value in scope["headers"]:
                if name == b"content-type":
                    if content_type is None:
                        content_type = value
                elif name == KEY_HEADER and key is None:
                    key = value
            plain = content_type == b"application/json" and (
                key is None or PLAIN_KEY.fullmatch(key) is not None
            )
            if not plain or "fastapi.telemetry" in scope:
                return await strict(request)
            parsed = StrictJsonRequest(scope, request.receive)
            try:
                body = model.model_validate(await parsed.json())
            except Exception as exc:  # FastAPI's handler meets the same failure, and answers it
                if hasattr(parsed, "_body"):  # (the body read, kept: parsed or validated again)
                    return await full(parsed)
                return await full(StrictJsonRequest(scope, _raising(exc)))
            idempotency_key = None if key is None else key.decode("latin-1")
            response: Response = await endpoint(
                body=body, request=parsed, idempotency_key=idempotency_key
            )
            return response

        return enqueue


def _raising(exc: Exception) -> Callable[[], Coroutine[Any, Any, Any]]:
    async def receive() -> Any:
        raise exc

    return receive


def _effective(route: APIRoute) -> Any:
    """The route as its inclusion sees it (the including router's dependencies among its own):
    what FastAPI builds the handler from (APIRoute.get_route_handler)."""
    from fastapi import routing

    var = getattr(routing, "_effective_route_context_var", None)
    context = var.get() if var is not None else None
    if context is not None and getattr(context, "original_route", None) is route:
        return context
    return route
