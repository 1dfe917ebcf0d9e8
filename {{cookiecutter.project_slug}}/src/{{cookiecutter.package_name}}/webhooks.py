"""Signed completion webhooks: a job's final state POSTed to the `callback_url` its client gave.

Signed as Standard Webhooks (https://www.standardwebhooks.com) sign, so that their verifier
libraries work as they are: headers `webhook-id` (the delivery's id, the same on every try: a
receiver drops a repeat by it), `webhook-timestamp` (Unix seconds of this try) and
`webhook-signature` (`v1,` + base64 HMAC-SHA256 of `<id>.<timestamp>.<body>` under the secret's
bytes); the secret is WEBHOOK_SECRET, `whsec_` + base64, as their libraries take it.

Safe by default: only https (WEBHOOK_ALLOW_HTTP for http), no credentials in the URL, and never
an address a public service should not reach from inside (loopback, private, link-local and
the like, IPv4 inside IPv6 too) unless WEBHOOK_ALLOW_PRIVATE says so. An address written in the
URL is refused when the job is enqueued (a 422); a name is resolved at each delivery and every
address it resolves to is checked, and the request goes to the checked address (with the name
for TLS and Host), so a name that resolves elsewhere a moment later (DNS rebinding) reaches
nothing unchecked. Redirects are not followed. The secret is never logged: it signs, it is sent
nowhere.
"""

import base64
import hashlib
import hmac
import ipaddress
import json
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic_core import to_jsonable_python

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
URL_MAX = 2048


class CallbackRefusedError(Exception):
    """A callback URL this service will not call: the reason, for the client or the log."""


def secret_bytes(secret: str) -> bytes:
    """The key of a `whsec_` secret (Standard Webhooks' format: base64 after the prefix)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded + "==", validate=False)
    except ValueError as exc:
        raise ValueError("WEBHOOK_SECRET is whsec_ followed by base64") from exc


def sign(secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for one try."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: bytes, message_id: str, body: bytes) -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> tuple[str, str, int]:
    """The scheme, host and port of a callback URL this service may call, or why not."""
    if len(url) > URL_MAX:
        raise CallbackRefusedError(f"longer than {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefusedError(f"not a URL ({exc})") from exc
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        raise CallbackRefusedError(
            "only https callbacks" + ("" if allow_http else " (WEBHOOK_ALLOW_HTTP allows http)")
        )
    if parts.username is not None or parts.password is not None:
        raise CallbackRefusedError("no credentials in the URL (they would be logged and shown)")
    host = parts.hostname
    if not host or any(ord(char) < 33 or ord(char) > 126 for char in host):
        raise CallbackRefusedError("no host, or a host with spaces or other characters")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass  # a name: checked at each delivery, where it is resolved
    else:
        refuse_unless_public(address, allow_private=allow_private)
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


# IPv6 ranges that carry or reach an IPv4 address (IPv4-compatible and -translated, NAT64, 6to4,
# Teredo) or are
# no public address whatever `is_global` says (site-local): refused whole, as whatever IPv4
# address they lead to is not checked.
CARRIERS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "::/96",
        "::ffff:0:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001::/32",
        "fec0::/10",
    )
)


def refuse_unless_public(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool
) -> None:
    if allow_private:
        return
    # An IPv4 address written inside IPv6 (::ffff:127.0.0.1) is the IPv4 one.
    mapped = getattr(address, "ipv4_mapped", None) or address
    carried = isinstance(mapped, ipaddress.IPv6Address) and any(mapped in net for net in CARRIERS)
    if carried or not mapped.is_global or mapped.is_multicast:
        raise CallbackRefusedError(
            f"{address} is not a public address (WEBHOOK_ALLOW_PRIVATE allows such addresses)"
        )


def event_body(
    job_id: str,
    task: str,
    state: str,
    *,
    tries: int,
    result: Any = None,
    error: tuple[str, str] | None = None,
) -> str:
    """The JSON a receiver gets: Standard Webhooks' `type`, `timestamp` and `data`."""
    data: dict[str, Any] = {"id": job_id, "task": task, "state": state, "tries": tries}
    if state == "succeeded":
        data["result"] = result
    if error is not None:
        data["error"] = {"type": error[0], "message": error[1]}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    document = {"type": f"job.{state}", "timestamp": now, "data": data}
    return json.dumps(to_jsonable_python(document, fallback=str))
