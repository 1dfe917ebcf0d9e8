"""`copier update` against a real git history of this template: template fixes arrive, user edits
survive, overlapping edits are reported as copier documents, answers can change later, projects
made by cookiecutter or cruft adopt updates (cruft's own too), migrations carry renamed files over,
and a project made at the first release of CHANGELOG.md follows every release to the newest.

Each test copies the working template into a fresh git repository and tags releases there, so the
updates run against the current code, never against a published version; the release-by-release
test takes the older releases from their commits in this repository's history.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml
from copier.errors import UnsafeTemplateError

from support import (
    CRON_FILES,
    DATABASE_FILES,
    ROOT,
    SENTRY_FILES,
    TREE_NAME,
    UV,
    bake,
    clean_env,
    find_python,
    load_changelog,
    run,
    template_copy,
    tree,
)

IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}
README = (ROOT / "README.md").read_text(encoding="utf-8")
MARKERS = re.compile(r"^(<<<<<<<|>>>>>>>) ", re.MULTILINE)
RELEASES = load_changelog().releases()  # CHANGELOG.md, newest first


def git(cwd: Path, *args: str) -> str:
    return run(["git", *args], cwd=cwd, env=clean_env(**IDENTITY)).stdout


class TemplateRepo:
    """A git repository holding a copy of the working template; releases are tags."""

    def __init__(self, path: Path) -> None:
        self.path = path
        git(path, "init", "-q", "-b", "main")

    def file(self, relative: str) -> Path:
        """A file of the generated tree, by its path in a default render's terms."""
        return (
            self.path / TREE_NAME / relative.replace("my_service", "{{cookiecutter.package_name}}")
        )

    def replace(self, relative: str, old: str, new: str) -> None:
        path = self.file(relative)
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def release(self, tag: str) -> None:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", f"release {tag}")
        git(self.path, "tag", tag)

    def replace_tree(self, source: Path | str) -> None:
        """Hold the files of a template folder, or of a commit of this repository's history."""
        for path in self.path.iterdir():
            if path.name != ".git":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        if isinstance(source, Path):
            shutil.copytree(source, self.path, dirs_exist_ok=True)
            return
        known = subprocess.run(["git", "cat-file", "-e", f"{source}^{{commit}}"], cwd=ROOT)
        assert known.returncode == 0, f"commit {source} is missing: run `git fetch --unshallow`"
        archive = subprocess.run(
            ["git", "archive", source], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(self.path)], input=archive, check=True)


@pytest.fixture
def template_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TemplateRepo:
    for key, value in IDENTITY.items():  # copier commits in its own temporary clones too
        monkeypatch.setenv(key, value)
    return TemplateRepo(template_copy(tmp_path / "template"))


def commit_all(project: Path, message: str) -> None:
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message)


def generate(repo: TemplateRepo, dest: Path, vcs_ref: str | None = None, **answers: Any) -> Path:
    copier.run_copy(
        str(repo.path), str(dest), data=answers, defaults=True, quiet=True, vcs_ref=vcs_ref
    )
    git(dest, "init", "-q", "-b", "main")
    commit_all(dest, "generated")
    return dest


def update(project: Path, trust: bool = False, **kwargs: Any) -> None:
    copier.run_update(
        str(project), defaults=True, overwrite=True, quiet=True, unsafe=trust, **kwargs
    )


def edit(project: Path, relative: str, old: str, new: str) -> None:
    path = project / relative
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def answers_of(project: Path) -> dict[str, Any]:
    answers: dict[str, Any] = yaml.safe_load(
        (project / ".copier-answers.yml").read_text(encoding="utf-8")
    )
    return answers


def conflicts(project: Path) -> list[str]:
    found = [p.relative_to(project).as_posix() for p in project.rglob("*.rej")]
    for path in project.rglob("*"):
        if (
            path.is_file()
            and not {".git", ".venv"} & set(path.parts)
            and MARKERS.search(path.read_text(encoding="utf-8", errors="replace"))
        ):
            found.append(path.relative_to(project).as_posix())
    return found


def assert_fast_tier_passes(project: Path) -> None:
    """The updated project installs from its lockfile and its fast test tier passes."""
    python = find_python((project / ".python-version").read_text().strip())
    env = clean_env()
    run([UV, "sync", "--locked", "--python", python], cwd=project, env=env)
    run(
        [str(project / ".venv" / "bin" / "pytest"), "tests/unit", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
    )


# A template fix used by several tests: a README sentence and a Dockerfile label.
def release_a_fix(repo: TemplateRepo, tag: str) -> None:
    repo.replace(
        "README.md",
        "## Operations\n",
        "## Operations\n\nTemplate fix: size workers by queue lag, not by CPU.\n",
    )
    repo.replace(
        "Dockerfile",
        "EXPOSE 8000\n",
        'EXPOSE 8000\nLABEL org.opencontainers.image.source="template-fix"\n',
    )
    repo.release(tag)


@pytest.mark.slow
def test_a_template_fix_arrives_and_user_edits_survive(
    template_repo: TemplateRepo, tmp_path: Path
) -> None:
    template_repo.release("v1.0.0")
    project = generate(template_repo, tmp_path / "my-service")
    edit(
        project,
        "README.md",
        "\n## Run it\n",
        "\nOur on-call notes live in the wiki.\n\n## Run it\n",
    )
    edit(project, "src/my_service/tasks/word_count.py", '"counted %d words', '"counted %d words!')
    (project / "src/my_service/tasks/invoices.py").write_text('"""Our own task."""\n')
    commit_all(project, "our edits")

    release_a_fix(template_repo, "v1.1.0")
    # As README.md says to update, through copier's command line.
    readme_update = re.search(r"^uvx copier update (.*?)\s+#", README, re.MULTILINE)
    assert readme_update, "README.md gives no update command"
    run(
        [sys.executable, "-m", "copier", "update", *readme_update.group(1).split()],
        cwd=project,
        env=clean_env(**IDENTITY),
    )

    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "Template fix: size workers by queue lag" in readme
    assert "Our on-call notes live in the wiki." in readme
    assert (
        'LABEL org.opencontainers.image.source="template-fix"'
        in (project / "Dockerfile").read_text()
    )
    assert '"counted %d words!' in (project / "src/my_service/tasks/word_count.py").read_text()
    assert (project / "src/my_service/tasks/invoices.py").is_file()
    assert conflicts(project) == []
    assert answers_of(project)["_commit"] == "v1.1.0"
    assert_fast_tier_passes(project)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["inline", "rej"])
def test_overlapping_edits_are_reported_as_conflicts(
    template_repo: TemplateRepo, tmp_path: Path, mode: str
) -> None:
    template_repo.release("v1.0.0")
    project = generate(template_repo, tmp_path / "my-service")
    edit(project, "README.md", "# My Service\n", "# My Service (internal)\n")
    commit_all(project, "our title")

    template_repo.replace(
        "README.md",
        "# {{ cookiecutter.project_name }}\n",
        "# {{ cookiecutter.project_name }} service\n",
    )
    template_repo.release("v1.1.0")
    update(project, conflict=mode)

    readme = (project / "README.md").read_text(encoding="utf-8")
    if mode == "inline":
        assert conflicts(project) == ["README.md"]
        assert "<<<<<<< before updating\n# My Service (internal)\n" in readme
        assert "# My Service service\n>>>>>>> after updating" in readme
        assert "UU README.md" in git(project, "status", "--short")
    else:
        # The template's line is applied; the user's lost hunk waits in the .rej file.
        assert conflicts(project) == ["README.md.rej"]
        assert readme.startswith("# My Service service\n")
        assert "(internal)" in (project / "README.md.rej").read_text()
    assert_fast_tier_passes(project)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "files", "seam", "mark"),
    [
        ("use_cron", CRON_FILES, "src/my_service/worker/options.py", "CRON_JOBS"),
        ("use_sentry", SENTRY_FILES, "src/my_service/reporting.py", "from .error_reports"),
    ],
)
def test_switching_an_option_adds_and_removes_exactly_its_files(
    template_repo: TemplateRepo,
    tmp_path: Path,
    option: str,
    files: tuple[str, ...],
    seam: str,
    mark: str,
) -> None:
    template_repo.release("v1.0.0")
    project = generate(template_repo, tmp_path / "my-service")
    fresh = tree(project, skip=[".copier-answers.yml"])
    edit(project, "src/my_service/tasks/word_count.py", '"counted %d words', '"counted %d words!')
    commit_all(project, "our edit")
    option_files = [path.format(pkg="my_service") for path in files]

    update(project, data={option: False})

    assert not any((project / path).exists() for path in option_files)
    assert mark not in (project / seam).read_text()
    assert '"counted %d words!' in (project / "src/my_service/tasks/word_count.py").read_text()
    assert answers_of(project)[option] is False
    assert conflicts(project) == []
    assert_fast_tier_passes(project)
    commit_all(project, f"without {option}")

    update(project, data={option: True})

    for path in option_files:
        assert (project / path).read_bytes() == fresh[path][0], path
    assert (project / seam).read_bytes() == fresh[seam][0]
    assert '"counted %d words!' in (project / "src/my_service/tasks/word_count.py").read_text()
    assert conflicts(project) == []
    assert_fast_tier_passes(project)


@pytest.mark.slow
def test_choosing_a_database_later_adds_exactly_its_files_and_dependencies(
    template_repo: TemplateRepo, tmp_path: Path
) -> None:
    template_repo.release("v1.0.0")
    project = generate(template_repo, tmp_path / "my-service")
    edit(project, "src/my_service/tasks/word_count.py", '"counted %d words', '"counted %d words!')
    commit_all(project, "our edit")
    before = project_files(project)
    database_files = {path.format(pkg="my_service") for path in DATABASE_FILES}

    update(project, data={"database": "postgres"})

    after = project_files(project)
    assert set(after) - set(before) == database_files
    assert set(before) - set(after) == set()
    # What else changed is where the database enters: the seams, settings, compose, the lock.
    changed = {path for path in before if before[path] != after[path]}
    assert {
        "pyproject.toml",
        "uv.lock",
        "compose.yaml",
        "src/my_service/storage.py",
        "src/my_service/settings.py",
        "src/my_service/web/app.py",
    } <= changed
    assert '"counted %d words!' in (project / "src/my_service/tasks/word_count.py").read_text()
    assert answers_of(project)["database"] == "postgres"
    assert conflicts(project) == []
    assert_fast_tier_passes(project)
    commit_all(project, "with a database")

    update(project, data={"database": "none"})

    assert project_files(project) == before
    assert conflicts(project) == []


def project_files(project: Path) -> dict[str, tuple[bytes, bool]]:
    """The project's own files: not git's, nor what installing and testing it left."""
    made = (".git/", ".venv/", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/")
    return {
        path: content
        for path, content in tree(project, skip=[".copier-answers.yml"]).items()
        if not path.startswith(made) and "__pycache__/" not in path
    }


@pytest.mark.slow
def test_a_project_made_by_cookiecutter_adopts_updates(
    template_repo: TemplateRepo, tmp_path: Path, cookies: Any
) -> None:
    template_repo.release("v1.0.0")
    project = bake(cookies, template_repo.path, {})
    assert answers_of(project)["_commit"] == "v1.0.0"
    assert answers_of(project)["_src_path"] == str(template_repo.path)
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "generated by cookiecutter")

    release_a_fix(template_repo, "v1.1.0")
    update(project)

    # The adopted project now equals one copier made at v1.1.0.
    made_by_copier = tmp_path / "copier" / "my-service"
    copier.run_copy(str(template_repo.path), str(made_by_copier), defaults=True, quiet=True)
    skip = [".copier-answers.yml"]
    ours = {k: v for k, v in tree(project, skip).items() if not k.startswith(".git/")}
    assert ours == tree(made_by_copier, skip)
    assert answers_of(project)["_commit"] == "v1.1.0"
    assert_fast_tier_passes(project)


# v0.3.0's renames, in a default render's terms: the path before -> the path since.
V0_3_0_RENAMES = {
    "src/my_service/worker/wake.py": "src/my_service/worker/process.py",
    "src/my_service/queue/wake.py": "src/my_service/queue/wake_channel.py",
    "src/my_service/worker/runner.py": "src/my_service/worker/job_wrapper.py",
    "src/my_service/worker/settings.py": "src/my_service/worker/options.py",
    "src/my_service/worker/logs.py": "src/my_service/worker/log_redaction.py",
    "src/my_service/queue/arq.py": "src/my_service/queue/arq_queue.py",
    "tests/unit/test_worker_settings.py": "tests/unit/test_worker_options.py",
    "tests/unit/test_logs.py": "tests/unit/test_log_redaction.py",
}
# How the code named them before v0.3.0: new -> old, in imports.
V0_3_0_IMPORTS = {
    ".worker.process import": ".worker.wake import",
    ".queue.wake_channel import": ".queue.wake import",
    ".job_wrapper import": ".runner import",
    ".options import": ".settings import",
    "worker_options": "worker_settings",
    "worker import options as": "worker import settings as",
    ".log_redaction import": ".logs import",
    ".wake_channel import": ".wake import",
    ".queue.arq_queue import": ".queue.arq import",
    ".arq_queue import": ".arq import",
}


def release_before_v0_3_0(repo: TemplateRepo, tag: str) -> None:
    """The working template with v0.3.0's renames undone: each module at its old path, imported
    by its old name."""
    for old, new in V0_3_0_RENAMES.items():
        shutil.move(repo.file(new), repo.file(old))
    for path in (repo.path / TREE_NAME).rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for new, old in V0_3_0_IMPORTS.items():
            text = text.replace(new, old)
        path.write_text(text, encoding="utf-8")
    repo.release(tag)


def release_current(repo: TemplateRepo, tmp_path: Path, tag: str) -> Path:
    """The working template again, as release `tag`; returns the copy it came from."""
    shutil.rmtree(repo.path / TREE_NAME)
    current = template_copy(tmp_path / "current")
    shutil.copytree(current / TREE_NAME, repo.path / TREE_NAME)
    repo.release(tag)
    return current


def resolve_as_ours(path: Path) -> str:
    """The file with each inline conflict resolved to the user's side."""
    resolved = re.sub(
        r"<<<<<<< before updating\n(.*?)=======\n.*?>>>>>>> after updating\n",
        r"\1",
        path.read_text(),
        flags=re.DOTALL,
    )
    path.write_text(resolved)
    return resolved


@pytest.mark.slow
def test_the_v0_2_0_migration_carries_edits_of_the_renamed_queue_module(
    template_repo: TemplateRepo, tmp_path: Path
) -> None:
    # Rebuild v0.1.0 as released: the arq adapter was queue/arq_backend.py then.
    old = template_repo.file("src/my_service/queue/arq_backend.py")
    shutil.move(template_repo.file("src/my_service/queue/arq_queue.py"), old)
    template_repo.replace(
        "src/my_service/worker/options.py", "..queue.arq_queue import", "..queue.arq_backend import"
    )
    template_repo.replace(
        "src/my_service/queue/shards.py", ".arq_queue import", ".arq_backend import"
    )
    template_repo.replace(
        "tests/unit/test_settings.py", ".queue.arq_queue import", ".queue.arq_backend import"
    )
    template_repo.release("v0.1.0")
    project = generate(template_repo, tmp_path / "my-service")
    edit(
        project,
        "src/my_service/queue/arq_backend.py",
        "log = logging.getLogger(__name__)\n",
        "log = logging.getLogger(__name__)\nOUR_TUNING = 42\n",
    )
    commit_all(project, "our tuning")

    # The newest release: v0.2.0's migration moves the file to queue/arq.py, v0.3.0's on to
    # queue/arq_queue.py.
    current = release_current(template_repo, tmp_path, "v0.3.0")

    with pytest.raises(UnsafeTemplateError):
        update(project)  # migrations run only when the user trusts the template
    update(project, trust=True)

    # The user's file moved with its history; only the user's own lines are left to confirm.
    moved = project / "src/my_service/queue/arq_queue.py"
    assert not (project / "src/my_service/queue/arq_backend.py").exists()
    assert not (project / "src/my_service/queue/arq.py").exists()
    assert conflicts(project) == ["src/my_service/queue/arq_queue.py"]
    assert "<<<<<<< before updating\nOUR_TUNING = 42\n=======\n>>>>>>> after updating\n" in (
        moved.read_text()
    )
    resolved = resolve_as_ours(moved)
    fresh = current / TREE_NAME / "src/{{cookiecutter.package_name}}/queue/arq_queue.py"
    assert resolved == fresh.read_text().replace(
        "log = logging.getLogger(__name__)\n",
        "log = logging.getLogger(__name__)\nOUR_TUNING = 42\n",
    )
    assert_fast_tier_passes(project)


@pytest.mark.slow
def test_the_v0_3_0_migration_carries_edits_of_the_renamed_worker_modules(
    template_repo: TemplateRepo, tmp_path: Path
) -> None:
    release_before_v0_3_0(template_repo, "v0.2.0")
    project = generate(template_repo, tmp_path / "my-service")
    ours = 'log = logging.getLogger(__name__)\nOUR_NOTE = "wrapped"\n'
    edit(project, "src/my_service/worker/runner.py", "log = logging.getLogger(__name__)\n", ours)
    commit_all(project, "our note")

    current = release_current(template_repo, tmp_path, "v0.3.0")
    update(project, trust=True)

    # The edited module moved with its history, and only the user's own lines are left to
    # confirm; the modules the user left alone were replaced, so nothing else conflicts.
    for old, new in V0_3_0_RENAMES.items():
        assert not (project / old).exists(), old
        assert (project / new).is_file(), new
    moved = project / "src/my_service/worker/job_wrapper.py"
    assert conflicts(project) == ["src/my_service/worker/job_wrapper.py"]
    assert (
        '<<<<<<< before updating\nOUR_NOTE = "wrapped"\n=======\n>>>>>>> after updating\n'
        in moved.read_text()
    )
    fresh = current / TREE_NAME / "src/{{cookiecutter.package_name}}/worker/job_wrapper.py"
    assert resolve_as_ours(moved) == fresh.read_text().replace(
        "log = logging.getLogger(__name__)\n", ours
    )
    assert_fast_tier_passes(project)


def readme_block(marker: str) -> list[str]:
    """The commands of the README's shell block that follows a `<!-- marker -->` line."""
    match = re.search(rf"<!-- {marker}[^>]*-->\n```sh\n(.*?)```", README, re.DOTALL)
    assert match, f"README.md has no block marked {marker}"
    lines = [line.split("  #", 1)[0].strip() for line in match.group(1).splitlines()]
    return [line for line in lines if line]


def cruft(project_or_cwd: Path, command: str, template: Path) -> subprocess.CompletedProcess[str]:
    """A README line `uvx cruft ...`, run by the tests' cruft against the test's template."""
    argv = command.replace(CRUFT_SOURCE, str(template)).split()
    assert argv[:2] == ["uvx", "cruft"], command
    return subprocess.run(
        [sys.executable, "-m", "cruft", *argv[2:]],
        cwd=project_or_cwd,
        env=clean_env(**IDENTITY),
        capture_output=True,
        text=True,
        check=False,
    )


CRUFT_SOURCE = "https://github.com/org/arq-fastapi"


@pytest.mark.slow
def test_a_project_made_by_cruft_records_its_release_and_takes_the_next_by_cruft_or_copier(
    template_repo: TemplateRepo, tmp_path: Path
) -> None:
    # README.md's lines for cruft users: create from a release, make the repository, then check
    # for and take the next release. The test's template history has the two releases they name.
    create, make_repo, check, take = readme_block("cruft")
    (made_at,) = re.findall(r"--checkout (v[\d.]+)", create)
    [next_release] = set(re.findall(r"--checkout (v[\d.]+)", check + take))
    template_repo.release(made_at)
    release_a_fix(template_repo, next_release)  # the source's HEAD is already the next release

    created = cruft(tmp_path, create, template_repo.path)
    assert created.returncode == 0, created.stdout + created.stderr
    project = tmp_path / "my-service"
    assert answers_of(project)["_commit"] == made_at  # the release asked for, not the source's HEAD
    assert answers_of(project)["_src_path"] == str(template_repo.path)
    assert "Template fix: size workers" not in (project / "README.md").read_text()
    directory, _, git_line = make_repo.partition(" && ")
    assert directory == "cd my-service"
    run(["bash", "-c", git_line], cwd=project, env=clean_env(**IDENTITY))
    by_copier = tmp_path / "by-copier" / "my-service"
    shutil.copytree(project, by_copier)

    behind = cruft(project, check, template_repo.path)
    assert behind.returncode == 1, behind.stdout + behind.stderr
    assert "out of date" in behind.stdout
    taken = cruft(project, take, template_repo.path)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "Template fix: size workers by queue lag" in (project / "README.md").read_text()
    assert answers_of(project)["_commit"] == next_release
    assert conflicts(project) == []
    up_to_date = cruft(project, check, template_repo.path)
    assert up_to_date.returncode == 0, up_to_date.stdout + up_to_date.stderr

    # The same project takes the release through copier instead, as README.md's update line says.
    readme_update = re.search(r"^uvx copier update (.*?)\s+#", README, re.MULTILINE)
    assert readme_update, "README.md gives no update command"
    run(
        [sys.executable, "-m", "copier", "update", *readme_update.group(1).split()],
        cwd=by_copier,
        env=clean_env(**IDENTITY),
    )
    assert "Template fix: size workers by queue lag" in (by_copier / "README.md").read_text()
    assert answers_of(by_copier)["_commit"] == next_release
    assert conflicts(by_copier) == []
    skip = [".copier-answers.yml", ".cruft.json"]
    by_cruft = {k: v for k, v in tree(project, skip).items() if not k.startswith(".git/")}
    assert by_cruft == {k: v for k, v in tree(by_copier, skip).items() if not k.startswith(".git/")}


@pytest.mark.slow
def test_a_project_takes_every_release_of_the_changelog_in_turn(
    template_repo: TemplateRepo, tmp_path: Path
) -> None:
    """Made at the first release of CHANGELOG.md, updated to each next one in order: the older
    releases are their commits in this repository's history, the newest is the working template."""
    current = template_copy(tmp_path / "current")
    oldest_first = list(reversed(RELEASES))
    for release in oldest_first:
        template_repo.replace_tree(release.commit or current)
        template_repo.release(release.version)

    first, *later = oldest_first
    project = generate(template_repo, tmp_path / "my-service", vcs_ref=first.version)
    own = "src/my_service/tasks/invoices.py"
    (project / own).write_text('"""Our own task."""\n')
    commit_all(project, "our task")
    for release in later:
        update(project, trust=True, vcs_ref=release.version)
        assert answers_of(project)["_commit"] == release.version
        assert conflicts(project) == [], release.version
        commit_all(project, f"update to {release.version}")

    # What is left equals a project made at the newest release, plus the user's own file.
    fresh = tmp_path / "fresh" / "my-service"
    copier.run_copy(str(template_repo.path), str(fresh), defaults=True, quiet=True)
    skip = [".copier-answers.yml", own]
    ours = {k: v for k, v in tree(project, skip).items() if not k.startswith(".git/")}
    assert ours == tree(fresh, skip)
    assert (project / own).read_text() == '"""Our own task."""\n'
    assert_fast_tier_passes(project)
