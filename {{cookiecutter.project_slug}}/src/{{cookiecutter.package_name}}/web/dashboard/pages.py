"""HTML of the dashboard's pages and live fragments: small functions, every value escaped.

Status is never told by colour alone: each state has a symbol and a word, colour only adds to it.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from ...queue import (
    FINISHED,
    DeadLetter,
    JobEvent,
    JobPage,
    JobRecord,
    JobState,
    QueueStats,
    Waiting,
    WorkerInfo,
)

PREFIX = "/dashboard"
# Each state's symbol as an inline SVG drawn in the text's colour: characters such as ⏸ need an
# emoji font, which many machines lack (they showed as empty boxes).
LINE = 'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"'
ICONS = {
    JobState.QUEUED: f'<circle cx="8" cy="8" r="6" {LINE}/><path d="M8 5v3l2 2" {LINE}/>',
    JobState.DEFERRED: '<path d="M4 3h3v10H4zM9 3h3v10H9z"/>',
    JobState.IN_PROGRESS: '<path d="M4 2.5l9.5 5.5-9.5 5.5z"/>',
    JobState.SUCCEEDED: f'<path d="M3 8.5l3.5 3.5 6.5-8" {LINE}/>',
    JobState.FAILED: f'<path d="M4 4l8 8M12 4l-8 8" {LINE}/>',
    JobState.CANCELLED: f'<circle cx="8" cy="8" r="6" {LINE}/><path d="M4 12l8-8" {LINE}/>',
}


def state_icon(state: JobState) -> str:
    return (
        '<svg class="icon" viewBox="0 0 16 16" width="1em" height="1em" fill="currentColor" '
        f'aria-hidden="true" focusable="false">{ICONS[state]}</svg>'
    )


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def url(path: str, **query: object) -> str:
    params = {key: value for key, value in query.items() if value not in (None, "")}
    return f"{PREFIX}{path}" + (f"?{urlencode(params)}" if params else "")


def ago(moment: datetime) -> str:
    seconds = (datetime.now(tz=UTC) - moment).total_seconds()
    if seconds < 0:
        return f"in {duration(-seconds)}"
    return f"{duration(seconds)} ago"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f'<time datetime="{esc(moment.isoformat())}" title="{esc(stamp)}">{esc(ago(moment))}</time>'
    )


def job_link(job_id: str) -> str:
    return f'<a href="{esc(url("/jobs/" + job_id))}"><code>{esc(job_id)}</code></a>'


def state_badge(state: JobState) -> str:
    value = esc(state.value)
    return f'<span class="state state-{value}">{state_icon(state)} {value}</span>'


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """A table of already escaped cells; `empty` (a sentence) when it has no rows."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f'<th scope="col">{esc(header)}</th>' for header in headers)
    return (
        f'<div class="scroll"><table><caption>{esc(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def button_form(action: str, label: str, confirm: str, *, danger: bool = False) -> str:
    """A POST button; the page asks `confirm` first (static/dashboard.js)."""
    css = "button danger" if danger else "button"
    return (
        f'<form method="post" action="{esc(action)}" data-confirm="{esc(confirm)}" class="inline">'
        f'<button type="submit" class="{css}">{esc(label)}</button></form>'
    )


def layout(title: str, body: str, *, active: str, notice: str | None = None, logout: bool) -> str:
    links = [("overview", "/", "Overview"), ("jobs", "/jobs", "Jobs")]
    links.append(("dead", "/dead-letters", "Dead letters"))
    current = ' aria-current="page"'
    nav = "".join(
        f'<a href="{url(path)}"{current if key == active else ""}>{esc(label)}</a>'
        for key, path, label in links
    )
    if logout:
        nav += (
            f'<form method="post" action="{url("/logout")}" class="inline">'
            '<button type="submit" class="link">Log out</button></form>'
        )
    # The outcome of an action is announced to screen readers (role=status) as well as shown.
    status = f'<p class="notice" role="status">{esc(notice)}</p>' if notice else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · jobs dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{url("/static/dashboard.css")}">
<script src="{url("/static/dashboard.js")}" defer></script>
</head>
<body>
<header><strong class="brand">Jobs</strong><nav aria-label="Dashboard">{nav}</nav></header>
<main>
<h1>{esc(title)}</h1>
{status}
{body}
</main>
</body>
</html>
"""


def live(fragment_url: str, content: str, every_ms: int) -> str:
    """A region the page refreshes from `fragment_url` (static/dashboard.js)."""
    return (
        f'<div class="live" data-live="{esc(fragment_url)}" data-every="{every_ms}" '
        f'aria-live="polite">{content}</div>'
    )


def overview_fragment(
    stats: QueueStats,
    workers: Sequence[WorkerInfo],
    failures: Sequence[DeadLetter],
    cron: Mapping[str, datetime] | None,
) -> str:
    running: dict[str, int] = {}
    for worker in workers:
        running[worker.queue] = running.get(worker.queue, 0) + worker.running
    queue_rows = [
        [
            f"<code>{esc(depth.name)}</code>",
            esc(depth.ready),
            esc(depth.deferred),
            esc(duration(depth.oldest_ready_age)) if depth.ready else "—",
            esc(running.get(depth.name, 0)),
        ]
        for depth in stats.queues
    ]
    parts = [
        "<section><h2>Queues</h2>",
        *(
            f'<p class="notice">The Redis of <code>{esc(name)}</code> does not answer: its '
            "jobs, workers and dead letters are missing below until it does.</p>"
            for name in stats.unreachable
        ),
        table(
            "Jobs per queue",
            ["queue", "ready", "deferred", "oldest ready waits", "running"],
            queue_rows,
            "No queues.",
        ),
        "</section><section><h2>Workers</h2>",
        table(
            "Workers alive (fresh heartbeat)",
            ["worker", "queue", "last heartbeat", "running"],
            (
                [
                    f"<code>{esc(w.worker_id)}</code>",
                    esc(w.queue),
                    when(w.last_beat),
                    esc(w.running),
                ]
                for w in workers
            ),
            "No worker alive: queued jobs wait until one starts.",
        ),
        "</section>",
    ]
    if cron is not None:
        parts += [
            "<section><h2>Cron</h2>",
            table(
                "Cron jobs",
                ["cron job", "next run"],
                ([esc(name), when(at)] for name, at in sorted(cron.items())),
                "No default-queue worker alive to report the schedule.",
            ),
            "</section>",
        ]
    parts += [
        "<section><h2>Recent failures</h2>",
        f'<p class="count">{esc(plural(stats.dead_letters, "dead letter"))} in all · '
        f'<a href="{url("/dead-letters")}">all dead letters</a></p>',
        table(
            "Jobs that failed for good, newest first",
            ["job", "task", "error", "failed"],
            (
                [
                    job_link(letter.job_id),
                    esc(letter.task),
                    f"{esc(letter.error.type)}: {esc(letter.error.message)}",
                    when(letter.failed_at),
                ]
                for letter in failures
            ),
            "No failures.",
        ),
        "</section>",
    ]
    return "".join(parts)


def jobs_filter(state: JobState | None, task: str | None, tasks: Iterable[str]) -> str:
    state_options = '<option value="">any state</option>' + "".join(
        f'<option value="{esc(s.value)}"{" selected" if s is state else ""}>{esc(s.value)}</option>'
        for s in JobState
    )
    task_options = '<option value="">any task</option>' + "".join(
        f'<option value="{esc(name)}"{" selected" if name == task else ""}>{esc(name)}</option>'
        for name in tasks
    )
    return (
        f'<form method="get" action="{url("/jobs")}" class="filters">'
        f'<label>State <select name="state">{state_options}</select></label>'
        f'<label>Task <select name="task">{task_options}</select></label>'
        '<button type="submit" class="button">Filter</button></form>'
    )


def progress_bar(record: JobRecord) -> str:
    if record.state is JobState.SUCCEEDED:
        percent = 100.0
    elif record.progress is not None:
        percent = record.progress.percent
    else:
        percent = 0.0
    message = (
        f" {esc(record.progress.message)}" if record.progress and record.progress.message else ""
    )
    return (
        f'<progress max="100" value="{percent:.0f}" aria-label="progress of job {esc(record.id)}">'
        f'{percent:.0f} %</progress> <span class="percent">{percent:.0f} %</span>{message}'
    )


def jobs_table(page: JobPage, state: JobState | None, task: str | None) -> str:
    rows = (
        [
            job_link(record.id),
            esc(record.task),
            state_badge(record.state),
            esc(record.tries),
            when(record.enqueued_at),
            progress_bar(record),
        ]
        for record in page.jobs
    )
    older = ""
    if page.next_before is not None:
        query = {"state": state.value if state else None, "task": task}
        older_url = url("/jobs", **query, before=repr(page.next_before))
        older = f'<p><a href="{esc(older_url)}">Older jobs →</a></p>'
    return (
        table(
            "Jobs, newest first",
            ["job", "task", "state", "tries", "enqueued", "progress"],
            rows,
            "No jobs match.",
        )
        + older
    )


def job_fragment(record: JobRecord, events: Sequence[JobEvent]) -> str:
    """The live part of a job's page; `data-final` once the job can change no more."""
    final = ' data-final="true"' if record.state in FINISHED else ""
    facts = [
        (
            "state",
            state_badge(record.state) + (" · cancel requested" if record.cancel_requested else ""),
        ),
        ("progress", progress_bar(record)),
        ("tries", esc(record.tries)),
        ("enqueued", when(record.enqueued_at)),
        ("started", when(record.started_at)),
        ("finished", when(record.finished_at)),
    ]
    if record.waiting is not None:
        facts.append(("waiting for", waiting_text(record.waiting)))
    if record.parents:
        facts.append(("runs after", ", ".join(map(job_link, record.parents))))
    if record.children:
        facts.append(("runs before", ", ".join(map(job_link, record.children))))
    if record.error is not None:
        facts.append(
            ("error", f"<code>{esc(record.error.type)}</code>: {esc(record.error.message)}")
        )
    if record.state is JobState.SUCCEEDED:
        facts.append(("result", f"<pre>{esc(pretty(record.result))}</pre>"))
    details = "".join(f"<dt>{esc(name)}</dt><dd>{value}</dd>" for name, value in facts)
    history = table(
        "History, oldest first",
        ["when", "event"],
        ([when(event.at), event_text(event)] for event in events),
        "No events yet.",
    )
    return f'<div class="job"{final}><dl>{details}</dl><h2>History</h2>{history}</div>'


def event_text(event: JobEvent) -> str:
    if event.kind == "progress" and event.progress is not None:
        text = f"progress {event.progress.percent:.0f} %"
        return esc(f"{text} {event.progress.message}".strip())
    text = state_badge(event.state) if event.state else esc(event.kind)
    if event.error is not None:
        text += f" · {esc(event.error.type)}: {esc(event.error.message)}"
    if event.retry_in is not None:
        text += f" · retry in {esc(duration(event.retry_in))}"
    if event.waiting is not None:
        text += f" · {waiting_text(event.waiting)}"
    return text


WAITING_FOR = {
    "rate": "its rate limit",
    "concurrency": "a free place in its cap",
    "parents": "the jobs it runs after",
}


def waiting_text(waiting: Waiting) -> str:
    """A wait for the task's limits (queue.limits) or the job's parents, as the dashboard says
    it."""
    why = WAITING_FOR.get(waiting.reason, waiting.reason)
    if waiting.until is None:
        return f"waiting for {esc(why)}"
    due = waiting.until.astimezone(UTC).strftime("%H:%M:%S UTC")
    return f"waiting for {esc(why)}, due by {esc(due)}"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
