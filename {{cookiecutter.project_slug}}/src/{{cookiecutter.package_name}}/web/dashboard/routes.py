"""The dashboard's routes: pages, the live fragments they refresh, and the actions.

Reads go through the backend the API uses (the operator's port, QueueAdmin, and the jobs' port,
JobQueue); actions call the same code as the API's endpoints (cancel, replay through `submit`,
delete, purge). Every action is a POST form that asks for confirmation, checks that it came from
this site, and answers with a redirect to a page that says what happened. All of it is behind
OPERATOR_KEY (web/operator.py): a browser logs in once with the key and then carries a session
cookie (sessions.py).
"""

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from ...queue import (
    FINISHED,
    DeadLetter,
    JobFinishedError,
    JobNotFoundError,
    JobQueue,
    JobRecord,
    JobState,
    QueueAdmin,
    QueueUnavailableError,
)
from ...tasks import TASKS, redact
from ..deps import AdminDep, QueueDep, SessionsDep, SettingsDep
from ..operator import NOT_SET, is_operator_key, operator_key
from ..schemas import MAX_OFFSET, JobId
from ..submission import job_meta, submit
from . import pages, sessions
from .pages import PREFIX, esc, url
from .sessions import COOKIE

STATIC = Path(__file__).resolve().parent / "static"
PAGE_SIZE = 25


def same_site(request: Request) -> None:
    """Refuse a POST that another site's page made (CSRF): browsers send Origin with forms.

    The scheme compared is the one the browser used: behind a TLS-terminating proxy that is the
    proxy's X-Forwarded-Proto, believed only from FORWARDED_ALLOW_IPS (web/proxy.py); the host is
    the Host header the proxy passes on.
    """
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return  # not a browser's cross-site form (curl, tests): nothing to forge
    try:
        given = urlsplit(origin)
    except ValueError:  # e.g. "http://[": not a URL any browser sends; forged or broken
        given = None
    if given is None or (given.scheme, given.netloc) != (request.url.scheme, request.url.netloc):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused")


async def require_session(
    request: Request, settings: SettingsDep, operator_sessions: SessionsDep
) -> None:
    """Every page and action needs a session: without one, the login page."""
    token = request.cookies.get(COOKIE, "")
    key = settings.operator_key
    if key is None or not await sessions.is_open(operator_sessions, key.get_secret_value(), token):
        target = url("/login", next=request.url.path)
        raise HTTPException(status.HTTP_303_SEE_OTHER, headers={"Location": target})


router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(require_session)])
public = APIRouter(prefix=PREFIX, include_in_schema=False)

SameSite = Annotated[None, Depends(same_site)]


def page(title: str, body: str, request: Request, active: str) -> HTMLResponse:
    notice = request.query_params.get("notice")
    return HTMLResponse(pages.layout(title, body, active=active, notice=notice, logout=True))


def back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(url(path, notice=notice), status.HTTP_303_SEE_OTHER)


async def overview_html(admin: QueueAdmin) -> str:
    # At once: with the bulk queue on a Redis of its own, a stalled one costs each read its
    # bound (queue.shards), and the three would otherwise pay it one after another.
    stats, workers, letters = await asyncio.gather(
        admin.stats(), admin.workers(), admin.dead_letters(5), return_exceptions=True
    )
    if isinstance(stats, BaseException):
        raise stats
    if isinstance(workers, BaseException):
        raise workers
    if isinstance(letters, QueueUnavailableError) and stats.unreachable:
        failures: Sequence[DeadLetter] = []  # (the overview names the Redis that is missing)
    elif isinstance(letters, BaseException):
        raise letters
    else:
        failures = letters.letters
    # The schedule as the freshest worker that runs cron reports it (workers are newest first);
    # no section while no worker reports one (a project without cron jobs never does).
    cron = next((dict(worker.cron) for worker in workers if worker.cron), None)
    return pages.overview_fragment(stats, workers, failures, cron)


@router.get("")
@router.get("/")
async def overview(request: Request, admin: AdminDep) -> HTMLResponse:
    body = pages.live(url("/fragments/overview"), await overview_html(admin), 2000)
    return page("Overview", body, request, "overview")


@router.get("/fragments/overview")
async def overview_fragment(admin: AdminDep) -> HTMLResponse:
    return HTMLResponse(await overview_html(admin))


JobFilters = tuple[JobState | None, str | None, float | None]


def job_filters(
    state: Annotated[JobState | None, Query()] = None,
    task: Annotated[str | None, Query(max_length=100)] = None,
    before: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
) -> JobFilters:
    return state, task or None, before


Filters = Annotated[JobFilters, Depends(job_filters)]


async def jobs_html(admin: QueueAdmin, filters: JobFilters) -> str:
    state, task, before = filters
    listing = await admin.recent_jobs(PAGE_SIZE, before=before, state=state, task=task)
    return pages.jobs_table(listing, state, task)


@router.get("/jobs")
async def jobs(request: Request, admin: AdminDep, filters: Filters) -> HTMLResponse:
    state, task, before = filters
    listing = await jobs_html(admin, filters)
    if before is None:  # the newest page follows new jobs live; older pages stay put
        fragment = url("/fragments/jobs", state=state.value if state else None, task=task)
        listing = pages.live(fragment, listing, 2000)
    body = pages.jobs_filter(state, task, sorted(TASKS)) + listing
    return page("Jobs", body, request, "jobs")


@router.get("/fragments/jobs")
async def jobs_fragment(admin: AdminDep, filters: Filters) -> HTMLResponse:
    return HTMLResponse(await jobs_html(admin, filters))


async def job_html(job_queue: JobQueue, record: JobRecord) -> str:
    return pages.job_fragment(record, await job_queue.events(record.id))


@router.get("/jobs/{job_id}")
async def job(
    request: Request, job_queue: QueueDep, admin: AdminDep, job_id: JobId
) -> HTMLResponse:
    record = await job_queue.get(job_id)
    if record is None:
        gone = "<p>No such job: the id is unknown, or its record has expired.</p>"
        response = page(f"Job {job_id}", gone, request, "jobs")
        response.status_code = status.HTTP_404_NOT_FOUND
        return response
    live_part = await job_html(job_queue, record)
    arguments = await admin.arguments(job_id)
    shown = (
        "not kept any more"
        if arguments is None
        else pages.pretty(redact(TASKS, record.task, arguments))
    )
    facts = [("task", esc(record.task)), ("queue", f"<code>{esc(record.queue)}</code>")]
    if record.request_id:
        facts.append(("request id", f"<code>{esc(record.request_id)}</code>"))
    facts.append(("arguments", f"<pre>{esc(shown)}</pre>"))
    details = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    actions = ""
    if record.state not in FINISHED:
        actions = pages.button_form(
            url(f"/jobs/{job_id}/cancel"), "Cancel job", f"Cancel job {job_id}?", danger=True
        )
    live_part = pages.live(url(f"/fragments/jobs/{job_id}"), live_part, 500)
    body = f"<dl>{details}</dl>{actions}{live_part}"
    return page(f"Job {job_id}", body, request, "jobs")


@router.get("/fragments/jobs/{job_id}")
async def job_fragment(job_queue: QueueDep, job_id: JobId) -> HTMLResponse:
    record = await job_queue.get(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id!r} not found")
    return HTMLResponse(await job_html(job_queue, record))


@router.post("/jobs/{job_id}/cancel")
async def cancel(job_queue: QueueDep, job_id: JobId, _: SameSite) -> RedirectResponse:
    try:
        record = await job_queue.cancel(job_id)
    except JobNotFoundError:
        return back("/jobs", f"Job {job_id} is unknown.")
    except JobFinishedError as exc:
        return back(f"/jobs/{job_id}", f"Not cancelled: the job has {exc.state.value} already.")
    if record.state is JobState.CANCELLED:
        return back(f"/jobs/{job_id}", "Cancelled: the job will not run.")
    return back(f"/jobs/{job_id}", "Cancel requested: its worker is stopping the job.")


@router.get("/dead-letters")
async def dead_letters(
    request: Request, admin: AdminDep, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0
) -> HTMLResponse:
    letters = await admin.dead_letters(PAGE_SIZE, offset)
    rows = (
        [
            pages.job_link(letter.job_id),
            esc(letter.task),
            f"<code>{esc(letter.error.type)}</code>: {esc(letter.error.message)}",
            esc(letter.tries),
            pages.when(letter.failed_at),
            pages.button_form(
                url(f"/dead-letters/{letter.job_id}/replay"),
                "Replay",
                f"Run {letter.task} again as a new job?",
            )
            + pages.button_form(
                url(f"/dead-letters/{letter.job_id}/delete"),
                "Delete",
                f"Forget the dead letter of job {letter.job_id}?",
                danger=True,
            ),
        ]
        for letter in letters.letters
    )
    body = f'<p class="count">{esc(pages.plural(letters.total, "dead letter"))}, newest first.</p>'
    body += pages.table(
        "Dead letters", ["job", "task", "error", "tries", "failed", "actions"], rows, "None."
    )
    if offset + PAGE_SIZE < letters.total:
        body += f'<p><a href="{url("/dead-letters", offset=offset + PAGE_SIZE)}">Older →</a></p>'
    if letters.total:
        body += pages.button_form(
            url("/dead-letters/purge"),
            "Purge all dead letters",
            f"Forget all {letters.total} dead letters? This cannot be undone.",
            danger=True,
        )
    return page("Dead letters", body, request, "dead")


@router.post("/dead-letters/{job_id}/replay")
async def replay(
    request: Request,
    job_queue: QueueDep,
    admin: AdminDep,
    settings: SettingsDep,
    job_id: JobId,
    _: SameSite,
) -> RedirectResponse:
    letter = await admin.dead_letter(job_id)
    if letter is None:
        return back("/dead-letters", f"No dead letter for job {job_id}.")
    try:
        enqueued, _queue_name = await submit(
            job_queue, settings, letter.task, letter.kwargs, meta=job_meta(request), internal=True
        )
    except RequestValidationError as exc:
        reason = "; ".join(str(error.get("msg")) for error in exc.errors())
        return back("/dead-letters", f"Not replayed (the letter stays): {reason}")
    await admin.remove_dead_letter(job_id)
    return back(f"/jobs/{enqueued.job_id}", f"Replayed job {job_id} as this new job.")


@router.post("/dead-letters/{job_id}/delete")
async def delete(admin: AdminDep, job_id: JobId, _: SameSite) -> RedirectResponse:
    removed = await admin.remove_dead_letter(job_id)
    notice = f"Deleted the dead letter of job {job_id}." if removed else "Nothing to delete."
    return back("/dead-letters", notice)


@router.post("/dead-letters/purge")
async def purge(admin: AdminDep, _: SameSite) -> RedirectResponse:
    return back("/dead-letters", f"Purged {await admin.purge_dead_letters()} dead letters.")


LOGIN_FORM = """<form method="post" class="login">
<label>Operator key
<input type="password" name="key" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{next}">
<button type="submit" class="button">Log in</button>
</form>"""


def safe_next(target: str) -> str:
    """Only a dashboard path: never a redirect to another site."""
    return target if target.startswith(PREFIX) and not target.startswith("//") else PREFIX


@public.get("/login")
async def login_page(request: Request, settings: SettingsDep, next: str = PREFIX) -> HTMLResponse:
    notice = request.query_params.get("notice")
    if settings.operator_key is None:  # closed: say what to set, offer no form
        body = f'<p class="notice" role="alert">{esc(NOT_SET)}.</p>'
        page = pages.layout("Log in", body, active="", notice=notice, logout=False)
        return HTMLResponse(page, status.HTTP_403_FORBIDDEN)
    body = LOGIN_FORM.replace("{next}", esc(safe_next(next)))
    return HTMLResponse(pages.layout("Log in", body, active="", notice=notice, logout=False))


@public.post("/login")
async def login(
    request: Request, settings: SettingsDep, operator_sessions: SessionsDep, _: SameSite
) -> RedirectResponse:
    key = operator_key(settings)  # 403 naming OPERATOR_KEY while it is unset
    form = parse_qs((await request.body()).decode(errors="replace"))
    given = form.get("key", [""])[0]
    target = safe_next(form.get("next", [PREFIX])[0])
    if not is_operator_key(given, key):
        again = url("/login", notice="That is not the operator key.", next=target)
        return RedirectResponse(again, status.HTTP_303_SEE_OTHER)
    lifetime = settings.dashboard_session_lifetime
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        await sessions.start(operator_sessions, key, lifetime),
        max_age=lifetime,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        # The scheme the browser used (X-Forwarded-Proto from a trusted proxy): https gets a
        # cookie that never travels over plain http.
        secure=request.url.scheme == "https",
    )
    return response


@public.post("/logout")
async def logout(
    request: Request, settings: SettingsDep, operator_sessions: SessionsDep, _: SameSite
) -> RedirectResponse:
    if settings.operator_key is not None:  # ends the session for every copy of the cookie
        key = settings.operator_key.get_secret_value()
        await sessions.end(operator_sessions, key, request.cookies.get(COOKIE, ""))
    response = back("/login", "Logged out.")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def mount_dashboard(app: FastAPI) -> None:
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="dashboard-static")
    app.include_router(public)
    app.include_router(router)
