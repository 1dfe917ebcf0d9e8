"""Behind a TLS-terminating proxy: the scheme and client address the browser used.

A proxy that ends TLS talks plain http to the web; it says what the browser used in
X-Forwarded-Proto and X-Forwarded-For. Those headers are believed only from the peers in
FORWARDED_ALLOW_IPS: from anyone else they are ignored, or any client could claim https. The app
applies the setting itself (a value in `.env` counts too), so what the same-site check and the
cookie's Secure flag see never depends on how uvicorn was started; uvicorn reads the same variable
from the environment, and applying it twice changes nothing.
"""

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ..settings import Settings


def trust_proxies(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
