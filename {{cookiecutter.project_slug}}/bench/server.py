"""The web app as it is deployed, plus one bare endpoint, for bench/web.py:

    uvicorn bench.server:create_bench_app --factory

The bare endpoint sits behind the same middleware on the same server, so the ratio of the two
measures what enqueueing a job costs, not what the server or the machine does.
"""

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.web.app import create_app


def create_bench_app() -> FastAPI:
    app = create_app()

    @app.post("/bench/bare", include_in_schema=False)
    async def bare() -> dict[str, str]:
        return {"ok": "yes"}

    return app
