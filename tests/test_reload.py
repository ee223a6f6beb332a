"""New code on disk: on SIGHUP, the check before it, and debug mode's reload.

Each test copies ``tests/apps/reload_app.py`` into its temporary directory as
``reloadable.py``, serves it (with two workers, or in debug mode), edits it
and sends SIGHUP or lets the reload notice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
from pathlib import Path

import pytest
from support import ROOT, Client, Service, http_get

from sprockets_http import runner

COMMANDS = {
    "python -m sprockets_http": ["-m", "sprockets_http", "reloadable:make_app"],
    "python -m app": ["-m", "reloadable"],
}
READY = "all 2 workers ready"


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "reloadable.py"
    shutil.copy(Path(ROOT, "tests", "apps", "reload_app.py"), path)
    return path


def environment(module: Path, **env: str | None) -> dict[str, str | None]:
    return {
        "NUMBER_OF_PROCS": "2",
        "PYTHONPATH": os.pathsep.join([str(module.parent), ROOT]),
        # An edit within the second of the last could reuse stale bytecode.
        "PYTHONDONTWRITEBYTECODE": "1",
        **env,
    }


def start(
    services: type[Service], module: Path, command: str, **env: str
) -> tuple[Service, int, set[int]]:
    """Serve ``module`` with two workers; the service, its port, its workers."""
    service = services(COMMANDS[command], env=environment(module, **env))
    service.wait_for(READY)
    return service, service.wait_serving(), workers(service)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def version(port: int) -> tuple[str, int]:
    status, _, body = http_get(port, "/")
    assert status == 200
    answer = json.loads(body)
    return answer["version"], answer["pid"]


def workers(service: Service, start: int = 0) -> set[int]:
    return {
        int(pid)
        for pid in re.findall(r"worker (\d+) started", "".join(service.lines[start:]))
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_sighup_serves_the_code_on_disk_without_failing_a_request(
    services: type[Service],
    module: Path,
    notify_socket: tuple[socket.socket, str],
    command: str,
) -> None:
    sock, name = notify_socket
    # Replaced workers must not wait for the shutdown_delay, nor fail /health.
    pid_file = module.parent / "service.pid"  # the check must not trip on it
    service, port, old = start(
        services,
        module,
        command,
        SHUTDOWN_DELAY="30",
        NOTIFY_SOCKET=name,
        PID_FILE=str(pid_file),
    )
    assert sock.recv(64) == b"READY=1"
    assert version(port)[0] == "one"

    edit(module, 'VERSION = "one"', 'VERSION = "two"')
    client = Client(port, "/", "/health")
    try:
        mark = len(service.lines)
        service.send(signal.SIGHUP)
        service.wait_for(f"re-executed with the code on disk \\(pid {service.pid}\\)")
        service.wait_for("rolling restart finished", start=mark)
        for pid in old:
            service.wait_for(rf"worker {pid} exited with status 0 \(replaced\)")
    finally:
        client.stop()

    assert client.failures == []
    assert {status for _, status in client.answers} == {200}
    assert service.count("health check failing") == 0
    new = workers(service, mark)
    assert len(new) == 2
    assert {version(port) for _ in range(10)} <= {("two", pid) for pid in new}
    assert sock.recv(64).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    assert sock.recv(64) == b"READY=1"
    assert pid_file.read_text() == f"{service.pid}\n"


def test_sighup_keeps_the_old_workers_when_the_new_code_fails_to_import(
    services: type[Service], module: Path
) -> None:
    service, port, old = start(services, module, "python -m app")

    main = 'if __name__ == "__main__":'
    edit(module, main, f'raise RuntimeError("version two cannot be imported")\n{main}')
    mark = len(service.lines)
    service.send(signal.SIGHUP)
    service.wait_for(
        r"the code on disk failed its check \(it exited with status 1\): "
        "the workers keep running the code they run",
        start=mark,
    )
    assert "version two cannot be imported" in service.output
    assert {version(port) for _ in range(10)} <= {("one", pid) for pid in old}
    assert workers(service, mark) == set()

    service.send(signal.SIGTERM)
    assert service.wait() == 0, service.output


def test_sighup_keeps_the_old_workers_when_the_new_code_fails_to_start(
    services: type[Service], module: Path
) -> None:
    service, port, old = start(services, module, "python -m sprockets_http")

    edit(module, 'VERSION = "one"', 'VERSION = "two"')
    edit(module, "FAIL_BEFORE_RUN = False", "FAIL_BEFORE_RUN = True")
    mark = len(service.lines)
    service.send(signal.SIGHUP)
    failed = service.wait_for(
        r"worker (\d+) exited with status 70 \(failed to start\): "
        r"worker (\d+) keeps serving, the restart stops there",
        start=mark,
    )
    assert int(failed.group(2)) in old
    assert "before_run of version two fails on purpose" in service.output
    assert {version(port) for _ in range(10)} <= {("one", pid) for pid in old}

    service.send(signal.SIGTERM)
    assert service.wait() == 0, service.output
    for pid in old:
        assert service.count(rf"worker {pid} exited with status 0 \(stopped\)") == 1


@pytest.mark.parametrize(
    ("args", "env", "status", "says"),
    [
        (
            ["-m", "sprockets_http", "--check", "tests.apps.cli_app:make_app"],
            {},
            0,
            "check passed: the application was built",
        ),
        (
            ["-m", "reloadable"],
            {"SPROCKETS_HTTP_CHECK": "1"},
            0,
            "check passed: the application was built",
        ),
        (
            ["-m", "sprockets_http", "--check", "reloadable:make_app"],
            {"BREAK_FACTORY": "1"},
            runner.EXIT_START_FAILED,
            "check failed: creating the application failed",
        ),
        (
            ["-m", "sprockets_http", "--check", "tests.apps.cli_broken_app:make_app"],
            {},
            1,
            "No module named 'a_dependency_nobody_installed'",
        ),
    ],
    ids=["--check", "SPROCKETS_HTTP_CHECK", "factory fails", "import fails"],
)
def test_check_builds_the_application_and_serves_nothing(
    services: type[Service],
    module: Path,
    args: list[str],
    env: dict[str, str],
    status: int,
    says: str,
) -> None:
    if "BREAK_FACTORY" in env:
        header = "def make_app(**settings: Any) -> app.Application:\n"
        edit(module, header, header + '    raise ValueError("no application")\n')
    service = services(args, env=environment(module, **env))
    assert service.wait() == status, service.output
    assert says in service.output
    assert "serving on port" not in service.output


def serving(service: Service, start: int) -> tuple[int, str]:
    """Wait for the service to serve again; its port and its version."""
    match = service.wait_for(r"serving on port (\d+)", start=start)
    port = int(match.group(1))
    status, _, body = http_get(port, "/")
    assert status == 200
    return port, json.loads(body)["version"]


def test_a_save_reloads_after_the_shutdown_callbacks_even_after_a_syntax_error(
    services: type[Service],
    module: Path,
) -> None:
    env = environment(module, DEBUG="1", NUMBER_OF_PROCS=None)
    service = services(["-m", "reloadable"], env=env)
    assert serving(service, 0)[1] == "one"

    mark = len(service.lines)
    edit(module, 'VERSION = "one"', 'VERSION = "two"')
    service.wait_for("event: shutdown version=one", start=mark)
    assert serving(service, mark)[1] == "two"

    mark = len(service.lines)
    edit(module, 'VERSION = "two"', 'VERSION = "three')  # no closing quote
    service.wait_for("event: shutdown version=two", start=mark)
    service.wait_for("SyntaxError: unterminated string literal", start=mark)
    service.wait_for("waiting for a change to start the service again", start=mark)

    mark = len(service.lines)
    edit(module, 'VERSION = "three', 'VERSION = "three"')
    assert serving(service, mark)[1] == "three"

    service.send(signal.SIGTERM)
    assert service.wait() == 0, service.output
    assert service.count("event: shutdown version=three") == 1
