"""Where a service listens, whom it believes, and its PID file.

Real processes started with ``python -m sprockets_http``, real sockets: TCP
on loopback, IPv6 loopback, unix sockets, and a socket handed over as
systemd's socket activation hands it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import Service, free_port, http_get, unix_http_get

import sprockets_http
from sprockets_http import forwarded, listen
from sprockets_http.__main__ import main

FACTORY = "tests.apps.listen_app:make_app"
SERVING_AT = r"serving on .*\(pid (\d+)\)(?: with \w+)?(?: at (.*))?$"


def cli(
    services: type[Service],
    *args: str,
    env: dict[str, str | None] | None = None,
    **kwargs: object,
) -> Service:
    # One process unless a test asks for more (the last --procs wins).
    return services(
        [
            "-m",
            "sprockets_http",
            "--log-format",
            "text",
            "--procs",
            "1",
            *args,
            FACTORY,
        ],
        env=env,
        **kwargs,  # type: ignore[arg-type]
    )


def stop(service: Service) -> None:
    service.send(signal.SIGTERM)
    assert service.wait() == 0, service.output


def who(
    port: int,
    headers: dict[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    source: str | None = None,
) -> dict[str, object]:
    """Whom the service believes it is talking to: pid, remote_ip, protocol."""
    status, _, body = http_get(port, "/", headers, host=host, source=source)
    assert status == 200
    return dict(json.loads(body))


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            # No packet is sent: connect() only picks the outgoing address.
            probe.connect(("192.0.2.1", 9))
            address = str(probe.getsockname()[0])
        except OSError:
            address = ""
    if address and not address.startswith("127."):
        return address
    if shutil.which("ip") is None:
        return None
    listing = subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False
    ).stdout
    found = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", listing)
    return next((a for a in found if not a.startswith("127.")), None)


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- listening ---------------------------------------------------------------


def test_a_loopback_bind_refuses_connections_to_other_addresses(
    services: type[Service],
) -> None:
    other = non_loopback_ipv4()
    if other is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    loopback_port, everywhere_port = free_port(), free_port()
    service = cli(
        services,
        "--bind",
        f"127.0.0.1:{loopback_port}",
        "--bind",
        f":{everywhere_port}",
    )
    service.wait_serving()

    assert who(loopback_port)["remote_ip"] == "127.0.0.1"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((other, loopback_port), timeout=5).close()
    # The same address reaches the port bound on every interface.
    assert who(everywhere_port, host=other)["remote_ip"] == other
    stop(service)


def test_ipv6_and_a_unix_socket_are_served_by_every_worker(
    services: type[Service], tmp_path: Path
) -> None:
    if not has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    path = str(tmp_path / "http.sock")
    service = cli(
        services,
        "--procs",
        "2",
        "--bind",
        "[::1]:0",
        "--bind",
        f"unix:{path}",
        "--unix-socket-mode",
        "600",
    )
    service.wait_for("all 2 workers ready")
    serving = [m for m in map(re.compile(SERVING_AT).search, service.lines) if m]
    assert len(serving) == 2
    for match in serving:
        assert re.fullmatch(rf"\[::1\]:(\d+), unix:{re.escape(path)}", match.group(2))
    port = int(re.findall(r"\[::1\]:(\d+)", serving[0].group(2))[0])

    assert who(port, host="::1")["remote_ip"] == "::1"
    status, _, body = unix_http_get(path, "/")
    assert status == 200
    assert json.loads(body)["pid"] in {int(m.group(1)) for m in serving}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    stop(service)
    assert not os.path.exists(path), "the socket file outlived the service"


def test_a_stale_unix_socket_file_is_replaced(
    services: type[Service], tmp_path: Path
) -> None:
    path = str(tmp_path / "http.sock")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(path)  # left behind, as by a service that was killed
    service = cli(services, "--bind", f"unix:{path}")
    service.wait_for(rf"serving on unix:{re.escape(path)} \(pid")

    assert unix_http_get(path, "/")[0] == 200
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660  # the default
    stop(service)
    assert not os.path.exists(path)


def test_the_unix_socket_file_is_removed_at_exit_after_a_sighup(
    services: type[Service], tmp_path: Path
) -> None:
    # SIGHUP re-executes the supervisor, which inherits the socket.
    path = str(tmp_path / "http.sock")
    service = cli(services, "--procs", "2", "--bind", f"unix:{path}")
    service.wait_for("all 2 workers ready")
    mark = len(service.lines)
    service.send(signal.SIGHUP)
    service.wait_for(f"re-executed with the code on disk \\(pid {service.pid}\\)")
    service.wait_for("rolling restart finished", start=mark)
    assert unix_http_get(path, "/")[0] == 200

    stop(service)
    assert not os.path.exists(path), "the socket file outlived the service"


def test_a_unix_socket_another_process_listens_on_is_refused(
    services: type[Service], tmp_path: Path
) -> None:
    path = str(tmp_path / "http.sock")
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(path)
        live.listen()
        service = cli(services, "--bind", f"unix:{path}")
        assert service.wait() == 1, service.output
    assert f"cannot listen on unix:{path}: another process listens on it" in (
        service.output
    )
    assert os.path.exists(path), "the other process's socket file was removed"


def test_a_failed_bind_names_the_address_and_leaves_nothing_behind(
    services: type[Service], tmp_path: Path
) -> None:
    path = str(tmp_path / "http.sock")
    first = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = cli(
            services,
            "--bind",
            f"127.0.0.1:{first}",
            "--bind",
            f"unix:{path}",
            "--bind",
            f"127.0.0.1:{port}",
        )
        assert service.wait() == 1, service.output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in (
        service.output
    )
    assert "Traceback" not in service.output
    assert not os.path.exists(path), "the unix socket file was left behind"
    with socket.socket() as again:  # the first address was released
        again.bind(("127.0.0.1", first))


def test_an_inherited_fd_is_served(services: type[Service]) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        fd = listening.fileno()
        service = cli(services, "--bind", f"fd://{fd}", pass_fds=[fd])
        assert service.wait_serving() == port
        assert who(port)["pid"] == service.pid
        stop(service)


def test_an_fd_that_is_not_a_listening_socket_is_refused(
    services: type[Service],
) -> None:
    read_end, write_end = os.pipe()
    try:
        service = cli(services, "--bind", f"fd://{read_end}", pass_fds=[read_end])
        assert service.wait() == 1, service.output
    finally:
        os.close(read_end)
        os.close(write_end)
    assert f"cannot listen on fd://{read_end}: Socket operation on non-socket" in (
        service.output
    )


def test_a_socket_from_systemd_socket_activation_is_served(
    services: type[Service],
) -> None:
    # As systemd starts a socket-activated service: the listening socket at
    # file descriptor 3, LISTEN_FDS=1, and LISTEN_PID naming the service's
    # own process, which only exists once it runs; hence the exec.
    activate = (
        "import os, sys\n"
        "fd = int(sys.argv[1])\n"
        "if fd != 3:\n"
        "    os.dup2(fd, 3)\n"
        "    os.close(fd)\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
    )
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        fd = listening.fileno()
        service = services(
            [
                "-c",
                activate,
                str(fd),
                "-m",
                "sprockets_http",
                "--log-format",
                "text",
                "--procs",
                "2",
                # Ignored: the sockets from systemd win.
                "--bind",
                "127.0.0.1:0",
                FACTORY,
            ],
            pass_fds=[fd],
        )
        service.wait_for("all 2 workers ready")
        assert service.wait_serving() == port
        assert service.count(rf"at 127\.0\.0\.1:{port}$") == 2
        assert service.count(r"using 1 socket\(s\) passed in LISTEN_FDS") == 1

        status, _, body = http_get(port, "/env?name=LISTEN_PID&name=LISTEN_FDS")
        assert status == 200
        # Removed, so that programs the service starts do not take them.
        assert json.loads(body) == {"LISTEN_PID": None, "LISTEN_FDS": None}
        stop(service)


def test_listen_fds_for_another_process_are_ignored(
    services: type[Service],
) -> None:
    service = cli(services, env={"LISTEN_FDS": "1", "LISTEN_PID": "1"})
    port = service.wait_serving()
    assert service.count("LISTEN_FDS") == 0
    _, _, body = http_get(port, "/env?name=LISTEN_PID")
    assert json.loads(body) == {"LISTEN_PID": None}
    stop(service)


# -- whom to believe ---------------------------------------------------------

FORGED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Real-Ip": "203.0.113.8",
    "X-Forwarded-Proto": "https",
}


def test_forwarding_headers_are_believed_only_from_allowed_peers(
    services: type[Service], tmp_path: Path
) -> None:
    path = str(tmp_path / "http.sock")
    port = free_port()
    service = cli(
        services,
        "--bind",
        f"127.0.0.1:{port}",
        "--bind",
        f"unix:{path}",
        "--forwarded-allow-ips",
        "127.0.0.1",
    )
    service.wait_serving()

    untrusted = who(port, headers=FORGED, source="127.0.0.2")
    trusted = who(port, headers=FORGED, source="127.0.0.1")
    status, _, body = unix_http_get(path, "/", headers=FORGED)
    plain = who(port, source="127.0.0.1")  # a trusted peer, no headers

    assert untrusted["remote_ip"] == "127.0.0.2"
    assert untrusted["protocol"] == "http"
    assert trusted["remote_ip"] == "203.0.113.8"  # X-Real-Ip wins, as in Tornado
    assert trusted["protocol"] == "https"
    assert status == 200
    assert json.loads(body)["remote_ip"] == "203.0.113.8"
    assert plain["remote_ip"] == "127.0.0.1"
    service.wait_for(r"tornado\.access: 127\.0\.0\.1 ")  # the last request's
    access = [line for line in service.lines if "tornado.access" in line]
    assert [line.split(": ", 1)[1].split()[0] for line in access] == [
        "127.0.0.2",
        "203.0.113.8",
        "203.0.113.8",
        "127.0.0.1",
    ]
    stop(service)


def test_a_trusted_keep_alive_connection_is_believed_request_by_request(
    services: type[Service],
) -> None:
    service = cli(services, "--bind", "127.0.0.1:0")
    port = service.wait_serving()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen = []
    try:
        for headers in (FORGED, {}, {"X-Forwarded-For": "198.51.100.1"}):
            connection.request("GET", "/", headers=headers)
            seen.append(json.loads(connection.getresponse().read())["remote_ip"])
    finally:
        connection.close()
    assert seen == ["203.0.113.8", "127.0.0.1", "198.51.100.1"]
    stop(service)


def test_xheaders_off_believes_no_peer(services: type[Service]) -> None:
    service = cli(services, "--forwarded-allow-ips", "*", env={"XHEADERS": "0"})
    port = service.wait_serving()
    assert who(port, headers=FORGED)["remote_ip"] == "127.0.0.1"
    stop(service)


@pytest.mark.parametrize(
    ("setting", "allowed", "refused"),
    [
        ("127.0.0.0/8,::1", ["127.0.0.1", "127.9.9.9", "::1"], ["10.0.0.1", "::2"]),
        (
            " 10.0.0.0/8 , 2001:db8::/32, 192.0.2.7",
            ["10.1.2.3", "2001:db8::1", "192.0.2.7", "::ffff:10.0.0.1"],
            ["192.0.2.8", "2001:db9::1", "127.0.0.1"],
        ),
        ("*", ["203.0.113.1", "::1"], []),
        ("", [], ["127.0.0.1"]),
        (["10.0.0.1", "fe80::/10"], ["10.0.0.1", "fe80::1%eth0"], ["10.0.0.2"]),
    ],
)
def test_the_allow_list_matches_addresses_and_networks(
    setting: object, allowed: list[str], refused: list[str]
) -> None:
    allow_list = forwarded.AllowList.parse(setting)
    for address in allowed:
        assert allow_list.allows(address), address
    for address in refused:
        assert not allow_list.allows(address), address
    assert forwarded.AllowList.parse(str(allow_list)) == allow_list


# -- PID file ----------------------------------------------------------------


def test_the_pid_file_lifecycle(services: type[Service], tmp_path: Path) -> None:
    pid_file = tmp_path / "service.pid"
    first = cli(services, "--procs", "2", "--pid-file", str(pid_file))
    first.wait_for("all 2 workers ready")
    assert pid_file.read_text() == f"{first.pid}\n"  # the supervising parent

    second = cli(services, "--pid-file", str(pid_file))
    assert second.wait() == 2
    assert second.output == (
        f"sprockets_http: PID file {str(pid_file)!r} names process {first.pid}, "
        "which is running\n"
    )
    assert pid_file.read_text() == f"{first.pid}\n"

    stop(first)
    assert not pid_file.exists()


def test_a_stale_pid_file_is_replaced(services: type[Service], tmp_path: Path) -> None:
    with subprocess.Popen(["true"]) as dead:
        pass  # waited for: its pid names no process now
    pid_file = tmp_path / "service.pid"
    pid_file.write_text(f"{dead.pid}\n")

    service = cli(services, "--pid-file", str(pid_file))
    service.wait_serving()
    assert pid_file.read_text() == f"{service.pid}\n"
    stop(service)
    assert not pid_file.exists()


def test_a_file_that_is_not_a_pid_file_is_left_alone(
    services: type[Service], tmp_path: Path
) -> None:
    not_a_pid_file = tmp_path / "notes.txt"
    not_a_pid_file.write_text("remember the milk\n")
    service = cli(services, env={"PID_FILE": str(not_a_pid_file)})
    assert service.wait() == 2
    assert "does not hold a process id" in service.output
    assert not_a_pid_file.read_text() == "remember the milk\n"


# -- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--bind", "localhost"],
            {},
            "--bind: 'localhost' must be HOST:PORT, [IPV6]:PORT, :PORT, "
            "unix:PATH or fd://N",
        ),
        (
            [],
            {"BIND": "127.0.0.1:8000,[::1]:http"},
            "BIND must end with a port number (0 to 65535) (at '[::1]:http'), "
            "not '127.0.0.1:8000,[::1]:http'",
        ),
        (
            [],
            {"FORWARDED_ALLOW_IPS": "10.0.0.0/8, proxy.local"},
            "FORWARDED_ALLOW_IPS must be IP addresses and networks (or *), "
            "'proxy.local' is neither",
        ),
        (
            [],
            {"PID_FILE": "tests"},
            "PID_FILE must be a file name, not a directory, not 'tests'",
        ),
    ],
)
def test_bad_input_is_a_usage_error_before_anything_binds(
    services: type[Service],
    tmp_path: Path,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    path = tmp_path / "http.sock"
    # A valid address first (the command line's beats BIND): it must not
    # have been bound when the error is found.
    first = [] if "BIND" in env else ["--bind", f"unix:{path}"]
    service = cli(services, *first, *args, env=env)

    assert service.wait() == 2
    assert len(service.lines) == 1, service.output
    assert message in service.lines[0]
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "::1:8000"], "--bind: '::1:8000' must be HOST:PORT"),
        (
            ["--bind", "127.0.0.1:65536"],
            "--bind: '127.0.0.1:65536' must end with a port number (0 to 65535)",
        ),
        (["--bind", "unix:"], "--bind: 'unix:' must name a file after unix:"),
        (["--bind", "fd://x"], "'fd://x' must be fd:// and a file descriptor"),
        (
            ["--forwarded-allow-ips", "10.0.0.300"],
            "--forwarded-allow-ips: '10.0.0.300' must be IP addresses and networks",
        ),
        (
            ["--pid-file", "/no/such/directory/service.pid"],
            "--pid-file: '/no/such/directory/service.pid' must be in an existing "
            "directory, '/no/such/directory' is not",
        ),
        (
            ["--unix-socket-mode", "rw-rw----"],
            "'rw-rw----' must be file permissions in octal, such as 660",
        ),
    ],
)
def test_bad_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # The command line refuses these before it imports the factory: checked
    # in this process, quicker than a process each.
    with pytest.raises(SystemExit) as exit:
        main([*args, "no_such_module:make_app"])

    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1
    assert message in error


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bind": "127.0.0.1"}, "bind must be HOST:PORT"),
        ({"bind": ["127.0.0.1:1", 8000]}, "bind must be text or a list"),
        ({"forwarded_allow_ips": "10.0.0.0/33"}, "forwarded_allow_ips must be IP"),
        ({"pid_file": "/no/such/directory/x.pid"}, "pid_file must be in an existing"),
        ({"unix_socket_mode": 0o1777}, "unix_socket_mode must be file permissions"),
    ],
)
def test_bad_settings_raise_value_error_from_run(
    settings: dict[str, object], message: str
) -> None:
    def never_called(**settings: object) -> None:
        raise AssertionError("the factory must not be called")

    with pytest.raises(ValueError, match=re.escape(message)):
        sprockets_http.run(never_called, settings)  # type: ignore[arg-type]


@given(st.text())
def test_any_text_is_an_address_list_or_a_value_error(text: str) -> None:
    try:
        parsed = listen.addresses(text)
    except ValueError:
        return
    assert listen.addresses(list(parsed)) == parsed


@given(st.text())
def test_any_text_is_an_allow_list_or_a_value_error(text: str) -> None:
    try:
        allow_list = forwarded.AllowList.parse(text)
    except ValueError:
        return
    assert forwarded.AllowList.parse(str(allow_list)) == allow_list
