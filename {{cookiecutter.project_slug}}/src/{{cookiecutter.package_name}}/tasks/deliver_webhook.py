"""The service's own task: deliver a finished job's webhook (webhooks.py says how it is signed and
what it may reach). Internal: clients cannot enqueue it (POST /jobs answers as for an unknown
task, GET /tasks leaves it out); every queue's worker serves it, so a job's delivery is queued
with the job's end, on the job's own Redis (worker.job_end). A delivery that fails for good is a
dead letter like any job's, and an operator's replay sends it again."""

import asyncio
import contextlib
import functools
import ipaddress
import logging
import ssl
from collections import OrderedDict
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ..settings import Settings
from ..webhooks import (
    CallbackRefusedError,
    check_url,
    headers,
    refuse_unless_public,
    secret_bytes,
)
from .registry import Context, RetryPolicy, Task

log = logging.getLogger(__name__)


class DeliveryFailedError(Exception):
    """The receiver answered, but not with a 2xx: tried again, as Standard Webhooks expects."""


class WebhookNotConfiguredError(Exception):
    """No WEBHOOK_SECRET on this worker: nothing is sent unsigned."""


class DeliveryArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A receiver's URL may carry a token in its query: shown redacted, as secrets are.
    url: str = Field(max_length=2048, json_schema_extra={"redact": True})
    message_id: str = Field(max_length=300)
    body: str = Field(max_length=10_000_000)


async def deliver_webhook(ctx: Context, url: str, message_id: str, body: str) -> dict[str, int]:
    settings: Settings = ctx["settings"]
    if settings.webhook_secret is None:
        raise WebhookNotConfiguredError("WEBHOOK_SECRET is not set on this worker")
    allow_private = settings.webhook_allow_private
    scheme, host, port = check_url(
        url, allow_http=settings.webhook_allow_http, allow_private=allow_private
    )
    # Every address the name has now is checked, and the request goes to one of them: a name
    # that resolves elsewhere a moment later reaches nothing unchecked.
    loop = asyncio.get_running_loop()
    found = await loop.getaddrinfo(host, port, type=0, proto=6)  # TCP
    addresses = [str(entry[4][0]) for entry in found]
    for address in addresses:
        refuse_unless_public(ip(address), allow_private=allow_private)
    chosen = addresses[0]
    netloc = f"[{chosen}]:{port}" if ":" in chosen else f"{chosen}:{port}"
    parts = urlsplit(url)
    target = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    content = body.encode()
    sent = headers(secret_bytes(settings.webhook_secret.get_secret_value()), message_id, content)
    # A client per receiver's name (WebhookClients, below), or of its own where the worker
    # keeps none. The whole exchange ends by WEBHOOK_TIMEOUT and the answer's body is never
    # read: a receiver that streams forever holds neither the worker's memory nor its slot.
    clients: WebhookClients | None = ctx.get("webhook_clients")
    async with contextlib.AsyncExitStack() as stack:
        if clients is None:
            client = await stack.enter_async_context(new_client())
        else:
            client = await clients.for_host(host)
        async with (
            asyncio.timeout(settings.webhook_timeout),
            client.stream(
                "POST",
                target,
                content=content,
                headers={**sent, "host": parts.netloc},
                extensions={"sni_hostname": host},  # TLS checks the name, not the address
            ) as response,
        ):
            code = response.status_code
    if not 200 <= code < 300:
        raise DeliveryFailedError(f"the receiver answered {code}")
    log.info("webhook %s delivered (%d)", message_id, code)
    return {"status_code": code}


class WebhookClients:
    """The worker's HTTP clients for deliveries: one per receiver's host name, so that a
    receiver's connections are kept between deliveries while none is ever used for another name
    at the same address (its certificate was checked for this name only). No proxy from the
    environment: its tunnel would check the certificate against the address, not the name. The
    least recently used client goes past `limit` names."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._clients: OrderedDict[str, httpx.AsyncClient] = OrderedDict()

    async def for_host(self, host: str) -> httpx.AsyncClient:
        client = self._clients.get(host)
        if client is not None:
            self._clients.move_to_end(host)
            return client
        client = self._clients[host] = new_client()
        while len(self._clients) > self.limit:
            _, oldest = self._clients.popitem(last=False)
            await oldest.aclose()
        return client

    async def aclose(self) -> None:
        while self._clients:
            _, client = self._clients.popitem()
            await client.aclose()


def new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, verify=tls_context(), follow_redirects=False)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One context for every client: making one loads the CA bundle (milliseconds)."""
    return httpx.create_ssl_context()


def ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(address.partition("%")[0])  # (an IPv6 zone is no part of it)


TASK = Task(
    name="deliver_webhook",
    function=deliver_webhook,
    args=DeliveryArgs,
    # No timeout of its own: the smaller of the queues' (worker.job_wrapper.timeout), so that
    # serving it lengthens no queue's crash recovery; WEBHOOK_TIMEOUT bounds each try within.
    # Refused (CallbackRefusedError) or unsigned: failed at once. A refused connection, a
    # timeout or an answer other than 2xx: tried again, from 2 s doubling to 5 minutes.
    retry=RetryPolicy(
        on=(httpx.TransportError, DeliveryFailedError, OSError),
        timeouts=True,
        backoff=2,
        max_backoff=300,
    ),
    internal=True,
)

__all__ = [
    "TASK",
    "CallbackRefusedError",
    "DeliveryFailedError",
    "WebhookClients",
    "WebhookNotConfiguredError",
]
