"""After cookiecutter renders: write the copier answers file, then print the next steps.

With the answers file a cookiecutter-made project takes `copier update` like a copier-made one. Its
content matches what copier writes for the same answers (keys sorted, `_commit` and `_src_path` first).
cruft runs this hook too: it renders a clone checked out at the revision asked for and passes that
revision's commit as `_commit`, so the release recorded is the one rendered, not the source's HEAD.
"""

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import yaml

CONTEXT = json.loads(r'''{{ cookiecutter | tojson }}''')
QUESTIONS = (
    "project_name", "project_slug", "package_name", "description",
    "author_name", "author_email", "python_version", "use_cron", "use_api_key",
    "use_metrics", "use_tracing", "use_kubernetes", "use_dashboard", "use_sentry",
    "database",
)
# The same text as `_message_after_copy` in copier.yml (tests/test_hooks.py compares them).
# {folder}: where the project is, as the user can `cd` to it.
NEXT_STEPS = """
Next steps:
    cd {folder}
    git init -q && git add -A && git commit -qm "New project from arq-fastapi"   # updates need a repository
    uv run {{ cookiecutter.project_slug }} dev     # web, workers and Redis; Ctrl-C stops them
    uv run pytest
Then open http://localhost:8000/docs (README.md has the curl commands, and compose for Docker).
"""
HEADER = "# Changes here will be overwritten by Copier; NEVER EDIT MANUALLY\n"


def template_source() -> tuple[str, str | None]:
    """Where the template came from, as copier records it, and the git revision rendered."""
    source = CONTEXT.get("_template", "")
    repo_dir = CONTEXT.get("_repo_dir") or source
    if not os.path.isabs(repo_dir):
        # Hooks run inside the new project, while cookiecutter itself works inside the template
        # folder: its working directory is the absolute template path. Elsewhere than Linux, the
        # shell's PWD (where the user ran cookiecutter) is the next best guess.
        try:
            repo_dir = os.readlink(f"/proc/{os.getppid()}/cwd")
        except OSError:
            repo_dir = os.path.join(os.environ.get("PWD", os.getcwd()), repo_dir)
    if os.path.isfile(os.path.join(repo_dir, "cookiecutter.json")) and not source.startswith(
        ("gh:", "gl:", "bb:", "git+", "git@", "https:", "http:", "ssh:")
    ):
        source = os.path.normpath(repo_dir)  # a relative path would break later updates
    # cookiecutter renders the template folder itself: its HEAD is what was rendered. cruft renders
    # a clone at the revision asked for (`--checkout`) and names that commit in `_commit`; the
    # source folder's HEAD may be a later release. The hook runs inside the folder being rendered.
    revision = CONTEXT.get("_commit") or "HEAD"
    for where in dict.fromkeys(filter(None, [rendered_dir(), repo_dir])):
        try:
            commit = subprocess.run(
                ["git", "-C", where, "describe", "--tags", "--always", revision],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if commit:
            return source, commit
    return source, None


def rendered_dir() -> str | None:
    """The folder the engine renders from: cookiecutter (and cruft) run hooks from inside it."""
    try:
        return os.readlink(f"/proc/{os.getppid()}/cwd")
    except OSError:
        return None


def folder() -> str:
    """The new project's folder as the user can `cd` to it from where they ran the command.

    cookiecutter works inside the template while hooks run, so the user's folder is the shell's
    PWD; when the project is not below it (or PWD is unknown), the absolute path is still right.
    """
    project = os.getcwd()
    here = os.environ.get("PWD", "")
    if here and os.path.isabs(here):
        relative = os.path.relpath(project, here)
        if not relative.startswith(os.pardir):
            return shlex.quote(relative)
    return shlex.quote(project)


def write_answers(path: Path) -> None:
    source, commit = template_source()
    answers = {key: CONTEXT[key] for key in QUESTIONS}
    if commit:
        answers["_commit"] = commit
    answers["_src_path"] = source
    body = yaml.safe_dump(answers, indent=4, allow_unicode=True, default_flow_style=False)
    path.write_text(HEADER + body, encoding="utf-8")


if __name__ == "__main__":
    # Folders that come with an option; copier leaves them out through `_exclude` (copier.yml).
    if not CONTEXT["use_kubernetes"]:
        shutil.rmtree("deploy")
    if not CONTEXT["use_dashboard"]:
        shutil.rmtree(Path("src", CONTEXT["package_name"], "web", "dashboard"))
    if CONTEXT["database"] != "postgres":
        shutil.rmtree(Path("src", CONTEXT["package_name"], "database"))
    write_answers(Path(".copier-answers.yml"))
    print(NEXT_STEPS.replace("{folder}", folder()))
