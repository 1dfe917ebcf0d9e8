"""The generated dashboard in a real browser (headless Chromium driven by Playwright) against a
running service: real Redis, the web app and a worker per queue (`<project> dev`).

It proves what a user sees: the overview shows the queue and the live workers; a job enqueued
through the API appears and its progress bar moves to done without a reload; cancelling from the
page (with the keyboard) cancels the job; a dead letter replayed from the page runs. The browser
reports no console errors, the pages fit a phone's width, and a screenshot of each page is saved
under test-output/dashboard/ for a reviewer to look at. Every page is behind the operator key: each
test logs in first, as an operator would.
"""

import contextlib
import json
import shutil
import signal
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from support import ROOT, clean_env, run, start_dev

pytestmark = pytest.mark.slow

SHOTS = ROOT / "test-output" / "dashboard"
OPERATOR_KEY = "browser-operator-" + "k" * 32


def chromium_program(playwright: Playwright) -> str | None:
    """The system's Chromium (Debian's `chromium`, or a Chrome) if there is one, else the browser
    `playwright install chromium` downloaded; None without either."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    own = Path(playwright.chromium.executable_path)
    return str(own) if own.is_file() else None


def install_hint() -> str:
    """The one command that installs a browser for these tests on this system."""
    if sys.platform == "linux" and shutil.which("apt-get"):
        return "sudo apt-get install chromium"
    return "uv run playwright install chromium"


def api(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}{path}", data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


@contextlib.contextmanager
def running_dev(
    project: Path, redis_url: str, logs: Path, **extra: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """`my-service dev` of `project` on the tests' Redis, under queues of its own."""
    name = f"browser-{uuid.uuid4().hex[:8]}"
    env = clean_env(
        REDIS_URL=redis_url,
        QUEUE_NAME=f"{name}:queue",
        BULK_QUEUE_NAME=f"{name}:bulk",
        WORKER_HEARTBEAT_INTERVAL="1",
        **extra,
    )
    log = logs / f"{name}.log"
    dev, base = start_dev(project, env, log)
    try:
        assert dev.poll() is None, log.read_text()
        yield base, env
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=30)


@pytest.fixture(scope="module")
def service(
    synced: Callable[[str], Path], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """The defaults project running (`my-service dev`), with an operator key of ours."""
    project = synced("defaults")
    logs = tmp_path_factory.mktemp("browser")
    with running_dev(project, redis_url, logs, OPERATOR_KEY=OPERATOR_KEY) as (base, env):
        yield base, project, env


def log_in(page: Page, base: str, key: str = OPERATOR_KEY) -> None:
    """The login page, the operator key typed in, and back where the browser was going."""
    page.goto(f"{base}/dashboard")
    assert "/dashboard/login" in page.url
    page.get_by_label("Operator key").fill(key)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/dashboard")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        program = chromium_program(playwright)
        if program is None:
            pytest.fail(f"these tests need Chromium: {install_hint()}")
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        chromium = playwright.chromium.launch(executable_path=program, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    tab.on("console", console)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("dialog", lambda dialog: dialog.accept())  # the actions' confirmations: yes
    yield tab
    context.close()
    assert errors == [], f"the browser reported errors: {errors}"


def shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def fits_a_phone(page: Page, name: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    shoot(page, f"{name}-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert width <= 390, f"{name} is {width} px wide on a 390 px phone"


def test_the_overview_shows_the_queue_and_the_live_workers(
    service: tuple[str, Path, dict[str, str]], page: Page
) -> None:
    base, _project, env = service

    log_in(page, base)

    assert page.locator("h1").inner_text() == "Overview"
    assert page.locator("td > code", has_text=env["QUEUE_NAME"]).count() == 1
    # Both workers appear by themselves as their heartbeats arrive (live region, no reload).
    page.wait_for_function(
        "document.querySelectorAll('main section:nth-of-type(2) tbody tr').length >= 2",
        timeout=15_000,
    )
    shoot(page, "overview")
    fits_a_phone(page, "overview")


def test_an_enqueued_job_appears_and_its_progress_moves_to_done_without_reload(
    service: tuple[str, Path, dict[str, str]], page: Page
) -> None:
    base, _project, _env = service
    log_in(page, base)
    page.goto(f"{base}/dashboard/jobs")
    page.evaluate("window.loadedOnce = true")

    report = {"task": "render_report", "args": {"pages": 20, "seconds_per_page": 0.3}}
    job = api(base, "POST", "/jobs", report)  # six seconds of progress
    page.get_by_text(job["id"]).wait_for(timeout=10_000)  # the live list picks it up
    assert page.evaluate("window.loadedOnce") is True
    shoot(page, "jobs")

    page.get_by_role("link", name=job["id"]).click()
    page.evaluate("window.loadedOnce = true")
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen.add(int(page.evaluate("document.querySelector('.live progress').value")))
        if 100 in seen and page.locator(".live .state-succeeded").count():
            break
        time.sleep(0.1)
    assert 100 in seen, seen
    assert len(seen) >= 3, f"the bar jumped instead of moving: {sorted(seen)}"
    assert page.evaluate("window.loadedOnce") is True, "the page was reloaded"
    assert page.locator(".live [data-final]").count() == 1
    shoot(page, "job")
    fits_a_phone(page, "job")


def test_cancelling_from_the_page_with_the_keyboard_cancels_the_job(
    service: tuple[str, Path, dict[str, str]], page: Page
) -> None:
    base, _project, _env = service
    job = api(
        base, "POST", "/jobs", {"task": "word_count", "args": {"text": "x"}, "defer_seconds": 600}
    )
    log_in(page, base)
    page.goto(f"{base}/dashboard/jobs/{job['id']}")

    for _ in range(30):  # Tab to the button, as a keyboard user would
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Cancel job":
            break
    else:
        pytest.fail("the Cancel job button cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**notice=Cancelled*")

    assert "Cancelled: the job will not run." in page.get_by_role("status").inner_text()
    assert api(base, "GET", f"/jobs/{job['id']}")["state"] == "cancelled"
    shoot(page, "job-cancelled")


def test_a_dead_letter_replayed_from_the_page_runs(
    service: tuple[str, Path, dict[str, str]], page: Page
) -> None:
    base, project, env = service
    failed_id = f"failed-{uuid.uuid4().hex[:8]}"
    # A job that failed for good, as the worker's job wrapper records one.
    plant = f"""
import asyncio
from datetime import UTC, datetime
from redis.asyncio import Redis
from my_service.queue import DeadLetter, JobError
from my_service.queue.arq_queue import ledger_for
from my_service.settings import Settings

async def main():
    settings = Settings()
    async with Redis.from_url(str(settings.redis_url)) as redis:
        await ledger_for(redis, settings).add_dead_letter(DeadLetter(
            job_id="{failed_id}", task="word_count", queue=settings.queue_name,
            kwargs={{"text": "replayed from the page"}}, error=JobError("ValueError", "broken"),
            tries=3, failed_at=datetime.now(tz=UTC)))

asyncio.run(main())
"""
    run([str(project / ".venv" / "bin" / "python"), "-c", plant], cwd=project, env=env)
    log_in(page, base)
    page.goto(f"{base}/dashboard/dead-letters")
    shoot(page, "dead-letters")
    fits_a_phone(page, "dead-letters")

    row = page.locator("tr", has_text=failed_id)
    row.get_by_role("button", name="Replay").click()
    page.wait_for_url("**/dashboard/jobs/*notice=Replayed*")
    new_id = page.url.split("/dashboard/jobs/", 1)[1].split("?", 1)[0]
    page.locator(".live dd .state-succeeded").wait_for(timeout=15_000)

    assert new_id != failed_id
    job = api(base, "GET", f"/jobs/{new_id}")
    assert (job["state"], job["result"]["words"]) == ("succeeded", 4)
    shoot(page, "replayed")


def test_with_an_api_key_too_the_dashboard_asks_for_the_operator_key_once(
    synced: Callable[[str], Path], redis_url: str, tmp_path: Path, page: Page
) -> None:
    key = OPERATOR_KEY
    project = synced("py313-api-key-k8s")
    api_key = "browser-api-" + "k" * 32
    with running_dev(project, redis_url, tmp_path, API_KEY=api_key, OPERATOR_KEY=key) as (
        base,
        _env,
    ):
        page.goto(f"{base}/dashboard/jobs")
        assert "/dashboard/login" in page.url
        shoot(page, "login")

        page.get_by_label("Operator key").fill(api_key)  # the clients' key opens nothing here
        page.keyboard.press("Enter")
        page.wait_for_url("**/dashboard/login?notice=*")
        assert "That is not the operator key." in page.get_by_role("status").inner_text()

        page.get_by_label("Operator key").fill(key)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{base}/dashboard/jobs")
        assert page.locator("h1").inner_text() == "Jobs"
        [session] = [c for c in page.context.cookies() if c["name"] == "dashboard_session"]
        assert (session["httpOnly"], session["sameSite"]) == (True, "Strict")
        assert key not in session["value"]
        assert session["expires"] > time.time() + 7 * 3600  # DASHBOARD_SESSION_LIFETIME: 8 h

        page.get_by_role("button", name="Log out").click()
        page.wait_for_url("**/dashboard/login?notice=*")
        page.goto(f"{base}/dashboard")
        assert "/dashboard/login" in page.url
