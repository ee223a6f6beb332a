"""``python -m sprockets_http``, run as a real process with real signals."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
from support import Service, free_port, http_get

FACTORY = "tests.apps.cli_app:make_app"
SERVING_PID = r"serving on port (\d+) \(pid (\d+)\)"


def cli(
    services: type[Service], *args: str, env: dict[str, str | None] | None = None
) -> Service:
    return services(["-m", "sprockets_http", *args], env=env)


def test_serves_the_factory_until_sigterm(services: type[Service]) -> None:
    service = cli(services, "--procs", "1", "--log-format", "json", FACTORY)
    port = service.wait_serving()

    status, _, body = http_get(port, "/env?name=PORT")
    service.send(signal.SIGTERM)

    assert status == 200
    assert json.loads(body) == {"PORT": "0"}
    assert service.wait() == 0
    records = [json.loads(line) for line in service.lines]
    messages = [record["message"] for record in records]
    assert f"received SIGTERM, stopping (pid {service.pid})" in messages
    assert messages[-2:] == ["cli_app shut down", f"stopped (pid {service.pid})"]


def test_the_port_option_beats_the_environment(services: type[Service]) -> None:
    port = free_port()
    service = cli(services, "--port", str(port), FACTORY, env={"PORT": "0"})

    assert service.wait_serving() == port
    service.send(signal.SIGTERM)
    assert service.wait() == 0


@pytest.mark.parametrize(
    ("options", "kept"),
    [([], "from the environment"), (["--env-override"], "from the file")],
    ids=["environment wins", "--env-override"],
)
def test_the_env_file_is_read_before_the_factory_is_imported(
    services: type[Service], tmp_path: Path, options: list[str], kept: str
) -> None:
    port = free_port()
    env_file = tmp_path / "service.env"
    env_file.write_text(
        "# settings for the test\n"
        'export GREETING="hello, world"  # a comment after a value\n'
        "KEPT='from the file'\n"
        f"PORT={port}\n"
    )
    service = cli(
        services,
        "--env-file",
        str(env_file),
        *options,
        FACTORY,
        env={"PORT": None, "KEPT": "from the environment"},
    )

    assert service.wait_serving() == port
    status, _, body = http_get(port, "/env?name=GREETING&name=KEPT")
    service.send(signal.SIGTERM)

    assert status == 200
    assert json.loads(body) == {"GREETING": "hello, world", "KEPT": kept}
    assert service.wait() == 0


def test_procs_2_runs_two_workers(services: type[Service]) -> None:
    service = cli(services, "--procs", "2", "--log-format", "text", FACTORY)

    first = service.wait_for(SERVING_PID)
    first_line = service.lines.index(first.string)
    second = service.wait_for(SERVING_PID, start=first_line + 1)
    service.send(signal.SIGTERM)

    assert first.group(1) == second.group(1)
    assert first.group(2) != second.group(2)
    assert service.wait() == 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "the following arguments are required: MODULE:CALLABLE"),
        (["tests.apps.cli_app"], {}, "'tests.apps.cli_app' is not MODULE:CALLABLE"),
        ([":make_app"], {}, "':make_app' is not MODULE:CALLABLE"),
        (["no_such_service:make_app"], {}, "no module named 'no_such_service'"),
        (["tests.no_such:make_app"], {}, "no module named 'tests.no_such'"),
        (["no_such.app:make_app"], {}, "no module named 'no_such'"),
        (
            ["tests.apps.cli_app:make_ap"],
            {},
            "module 'tests.apps.cli_app' has no attribute 'make_ap'",
        ),
        (
            ["tests.apps.cli_app:NOT_CALLABLE"],
            {},
            "'tests.apps.cli_app:NOT_CALLABLE' is not callable: it is 'dict'",
        ),
        (
            ["--env-file", "missing.env", FACTORY],
            {},
            "cannot read env file 'missing.env': No such file or directory",
        ),
        (
            ["--env-file", "tests", FACTORY],
            {},
            "cannot read env file 'tests': Is a directory",
        ),
        (["--port", "http", FACTORY], {}, "--port: 'http' must be a port number"),
        (
            ["--port", "70000", FACTORY],
            {},
            "--port: '70000' must be a port number (0 to 65535)",
        ),
        ([FACTORY], {"PORT": "http"}, "PORT must be a port number, not 'http'"),
        (
            [FACTORY],
            {"DEBUG": "maybe"},
            "DEBUG must be on or off (1, true, yes, on / 0, false, no, off)",
        ),
        (["--procs", "two", FACTORY], {}, "--procs: 'two' must be a whole number"),
        (
            ["--shutdown-delay", "soon", FACTORY],
            {},
            "'soon' must be a number of seconds",
        ),
        (
            ["--log-format", "xml", FACTORY],
            {},
            "--log-format: 'xml' must be one of json, text",
        ),
        (
            [FACTORY],
            {"LOG_FORMAT": "xml"},
            "LOG_FORMAT must be one of json, text, not 'xml'",
        ),
        (
            ["--loop", "trio", FACTORY],
            {},
            "--loop: 'trio' must be one of auto, asyncio, uvloop",
        ),
        ([FACTORY], {"LOOP": "trio"}, "LOOP must be one of auto, asyncio, uvloop"),
        (["--workers", FACTORY], {}, "unrecognized arguments: --workers"),
    ],
)
def test_a_usage_error_exits_2_with_one_line_and_no_traceback(
    services: type[Service], args: list[str], env: dict[str, str], message: str
) -> None:
    service = cli(services, *args, env=env)

    assert service.wait() == 2
    assert len(service.lines) == 1, service.output
    assert message in service.lines[0]


def test_an_import_error_inside_the_module_shows_its_traceback(
    services: type[Service],
) -> None:
    service = cli(services, "tests.apps.cli_broken_app:make_app")

    assert service.wait() == 1
    assert "Traceback (most recent call last)" in service.output
    assert re.search(
        r"No module named 'a_dependency_nobody_installed'$", service.output, re.M
    )
