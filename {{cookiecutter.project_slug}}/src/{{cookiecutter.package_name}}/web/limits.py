"""A request body limit: bodies beyond MAX_REQUEST_BYTES get 413 before the app reads them.

uvicorn accepts bodies of any size, and a JSON body is parsed whole into memory. The limit is
checked twice: on the declared Content-Length, and on the bytes that actually arrive (a chunked
request declares none).
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(Exception):
    pass


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self.refuse(send)
            return
        received = 0
        exceeded = refused = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            # The app may turn the failed read into an answer of its own (FastAPI says 400):
            # the client gets the 413 instead.
            nonlocal refused
            if not exceeded:
                await send(message)
            elif message["type"] == "http.response.start" and not refused:
                refused = True
                await self.refuse(send)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLargeError:
            if not refused:
                await self.refuse(send)

    async def refuse(self, send: Send) -> None:
        body = b'{"detail":"request body too large: at most %d bytes"}' % self.max_bytes
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
