"""CHANGELOG.md, the migrations and the release job agree: every migration belongs to a released
version, every release older than the newest names a commit of this history, and the release job
tags exactly the releases that have no tag yet."""

import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from support import ROOT, clean_env, load_changelog, run

changelog = load_changelog()
RELEASES = changelog.releases()
IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}


def migration_versions() -> list[str]:
    copier_yml = yaml.safe_load((ROOT / "copier.yml").read_text(encoding="utf-8"))
    return [entry["version"] for entry in copier_yml.get("_migrations", [])]


def test_every_migration_is_a_release_that_says_so() -> None:
    released = {release.version for release in RELEASES}
    migrations = migration_versions()

    assert set(migrations) <= released, "a migration names a version CHANGELOG.md never released"
    migrated = {release.version for release in RELEASES if release.migrated}
    assert migrated == set(migrations), (
        "CHANGELOG.md's 'Migrated by' sections and copier.yml's _migrations disagree"
    )


def test_the_newest_release_is_this_commit_and_older_ones_name_theirs() -> None:
    newest, *older = RELEASES
    assert newest.commit is None, "the newest release is the commit that brings it to main"
    tags = set(run(["git", "tag", "--list", "v*"], cwd=ROOT).stdout.split())
    assert all(release.commit or release.version in tags for release in older)


def test_released_commits_are_in_this_history_with_the_files_they_describe() -> None:
    shallow = run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT).stdout.strip()
    assert shallow == "false", "the releases' commits are missing: run `git fetch --unshallow`"
    for release in RELEASES[1:]:
        if release.commit is None:
            continue  # tagged by the release job (the previous test)
        ancestor = subprocess.run(
            ["git", "merge-base", "--is-ancestor", release.commit, "HEAD"], cwd=ROOT, check=False
        )
        assert ancestor.returncode == 0, (
            f"{release.version}: {release.commit} is not on this branch"
        )
        # The migrations a release's copier.yml knows are the releases up to it.
        copier_yml = yaml.safe_load(
            run(["git", "show", f"{release.commit}:copier.yml"], cwd=ROOT).stdout
        )
        known = {entry["version"] for entry in copier_yml.get("_migrations", [])}
        assert known == {r.version for r in RELEASES if r.migrated and r.key <= release.key}


def test_the_changelog_refuses_releases_out_of_order() -> None:
    entry = (
        "## {v} ({d})\n\n### In generated projects\n\nx\n\n"
        "### Migrated by `copier update --trust`\n\nNone.\n\n"
        "### By hand after updating\n\nNone.\n\n"
    )
    ordered = entry.format(v="v1.1.0", d="2026-02-01") + entry.format(v="v1.0.0", d="2026-01-01")
    assert [r.version for r in changelog.releases(ordered)] == ["v1.1.0", "v1.0.0"]
    swapped = entry.format(v="v1.0.0", d="2026-01-01") + entry.format(v="v1.1.0", d="2026-02-01")
    with pytest.raises(ValueError, match=r"v1\.0\.0 must be newer than v1\.1\.0"):
        changelog.releases(swapped)
    with pytest.raises(ValueError, match="no section"):
        changelog.releases(ordered.replace("### By hand after updating", "### Manual"))


def release_job_script() -> str:
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]
    job = jobs["release"]
    assert job["needs"] == ["all-green"], "tag only what passed every check"
    assert job["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert job["permissions"] == {"contents": "write"}
    assert job["steps"][0]["with"]["fetch-depth"] == 0, "the job compares with the existing tags"
    [script] = [step["run"] for step in job["steps"] if "run" in step]
    return str(script)


def test_the_release_job_tags_each_untagged_release_at_its_commit(tmp_path: Path) -> None:
    """The job's own script, run in a copy of this history with a stand-in for `gh` that records
    what it was asked: with v0.1.0 tagged already, the other releases are published, the newest at
    HEAD, each with its entry as notes."""
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", "--no-local", str(ROOT), str(clone)], cwd=tmp_path)
    env = clean_env(**IDENTITY)
    # This checkout's CHANGELOG.md and release script, committed on top: the commit under test.
    for relative in ("CHANGELOG.md", "scripts/changelog.py"):
        (clone / relative).write_bytes((ROOT / relative).read_bytes())
    run(["git", "add", "CHANGELOG.md", "scripts/changelog.py"], cwd=clone, env=env)
    run(["git", "commit", "-q", "--allow-empty", "-m", "release"], cwd=clone, env=env)
    oldest = RELEASES[-1]
    run(["git", "tag", oldest.version, str(oldest.commit)], cwd=clone, env=env)
    head = run(["git", "rev-parse", "HEAD"], cwd=clone).stdout.strip()

    calls = tmp_path / "gh-calls"
    fake = tmp_path / "bin" / "gh"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {calls}\n'
        'while [ $# -gt 0 ]; do [ "$1" = --notes-file ] && cat "$2" >> '
        f"{calls}.notes; shift; done\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env.update(PATH=f"{fake.parent}{os.pathsep}{env['PATH']}", RUNNER_TEMP=str(runner_temp))
    run(["bash", "-e", "-c", release_job_script()], cwd=clone, env=env)

    def full(commit: str) -> str:
        return run(["git", "rev-parse", f"{commit}^{{commit}}"], cwd=clone).stdout.strip()

    expected = [
        f"release create {r.version} --target {full(r.commit) if r.commit else head} "
        f"--title {r.version} --notes-file {runner_temp}/notes.md"
        for r in reversed(RELEASES[:-1])
    ]
    assert calls.read_text().splitlines() == expected
    notes = (tmp_path / "gh-calls.notes").read_text()
    assert notes == "".join(r.body for r in reversed(RELEASES[:-1]))

    # Once every release has its tag, the job does nothing.
    for release in RELEASES[:-1]:
        run(["git", "tag", release.version, release.commit or head], cwd=clone, env=env)
    calls.unlink()
    run(["bash", "-e", "-c", release_job_script()], cwd=clone, env=env)
    assert not calls.exists()
