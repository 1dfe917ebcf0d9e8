"""Reject answers that would generate a broken project, before cookiecutter writes anything.

The same rules live in copier.yml as `validator:` expressions; tests/test_questions.py feeds the same
bad answers to both engines. Exit status 1 makes cookiecutter remove the partial output.
"""

import json
import os
import re
import sys

# Jinja's tojson escapes quotes and writes one line, so the raw string cannot be closed early.
ANSWERS = json.loads(r'''{{ cookiecutter | tojson }}''')

SUPPORTED_PYTHONS = ("3.12", "3.11", "3.13")
DATABASES = ("none", "postgres")
SHADOWED = {
    "arq", "fastapi", "redis", "pydantic", "uvicorn", "httpx", "tests", "test", "src",
    "settings", "queue", "asyncio", "json", "logging", "typing",
}
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


KUBERNETES_SLUG_MAX = 50  # 63 (Kubernetes name and label limit) - len("-worker-bulk") - 1


def problems(a: dict) -> list[str]:
    found = []
    if not a["project_name"].strip():
        found.append("project_name must not be empty")
    slug = a["project_slug"]
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", slug) or len(slug) > 64:
        found.append(
            f"project_slug {slug!r} is not valid: use 1-64 lowercase letters, digits and single "
            "hyphens, starting with a letter (e.g. my-service)"
        )
    package = a["package_name"]
    if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", package) or len(package) > 64:
        found.append(
            f"package_name {package!r} is not valid: use 1-64 lowercase letters, digits and single "
            "underscores, starting with a letter (e.g. my_service)"
        )
    elif package in SHADOWED:
        found.append(f"package_name {package!r} would shadow a module the project imports: choose another")
    if CONTROL.search(a["description"]):
        found.append("description must be a single line without control characters")
    if not a["author_name"].strip() or CONTROL.search(a["author_name"]):
        found.append("author_name must be a non-empty single line")
    if not re.fullmatch(r"[^@\s\"]+@[^@\s\"]+\.[^@\s\"]+", a["author_email"]):
        found.append(f"author_email {a['author_email']!r} is not an email address")
    if a["python_version"] not in SUPPORTED_PYTHONS:
        found.append(
            f"python_version {a['python_version']!r} is not supported: choose one of "
            + ", ".join(SUPPORTED_PYTHONS)
        )
    if a["database"] not in DATABASES:
        found.append(
            f"database {a['database']!r} is not supported: choose one of " + ", ".join(DATABASES)
        )
    for name in (
        "use_cron",
        "use_api_key",
        "use_metrics",
        "use_tracing",
        "use_kubernetes",
        "use_dashboard",
        "use_sentry",
    ):
        if not isinstance(a[name], bool):
            found.append(f"{name} must be true or false, not {a[name]!r}")
    if a["use_kubernetes"] is True and len(slug) > KUBERNETES_SLUG_MAX:
        found.append(
            f"use_kubernetes needs a project_slug of at most {KUBERNETES_SLUG_MAX} characters: "
            "Kubernetes names and labels stop at 63, and the manifests add suffixes such as "
            "-worker-bulk"
        )
    return found


def replay_hint() -> str | None:
    """How to answer again without retyping: cookiecutter saved the answers before this hook ran.

    Only cookiecutter's own command line saves them (it sets `_repo_dir`); cruft does not.
    """
    repo_dir = ANSWERS.get("_repo_dir")
    if not repo_dir:
        return None
    try:  # hooks run with cookiecutter's Python: its configuration says where replays go
        from cookiecutter.config import get_user_config

        replay_dir = get_user_config()["replay_dir"]
    except Exception:  # noqa: BLE001 - a hint must not hide the reasons above
        replay_dir = os.path.expanduser("~/.cookiecutter_replay")
    name = os.path.basename(os.path.normpath(repo_dir))
    replay = os.path.join(replay_dir, f"{name}.json")
    template = ANSWERS.get("_template") or repo_dir
    return (
        f"Your answers are saved in {replay}: correct the refused one there and run "
        f"`cookiecutter --replay {template}`, or give it on the command line "
        f"(`cookiecutter {template} key=value`)."
    )


if __name__ == "__main__":
    errors = problems(ANSWERS)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    hint = replay_hint() if errors else None
    if hint:
        print(hint, file=sys.stderr)
    sys.exit(1 if errors else 0)
