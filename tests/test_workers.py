"""Several worker processes under a supervising parent: real processes, real signals.

Every service is ``tests/apps/workers_app.py``; the tests follow it through its
log lines and its ``event:`` lines, and look at the real processes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from support import Client, Service, http_get, records

from sprockets_http import heartbeat, runner, supervisor

APP = ["-m", "tests.apps.workers_app"]
ALL_READY = r"all 2 workers ready"
STARTED = r"worker (\d+) started"


def start_workers(services: type[Service], **env: str) -> tuple[Service, int, set[int]]:
    """Start the app with two workers; return it, its port and the worker pids."""
    service = services(APP, env={"WORKERS": "2", **env})
    service.wait_for(ALL_READY)
    port = service.wait_serving()
    pids = worker_pids(service)
    assert len(pids) == 2, service.output
    assert children(service.pid) == pids
    return service, port, pids


def worker_pids(service: Service) -> set[int]:
    """The pids of every worker the service started so far."""
    return {int(pid) for pid in re.findall(STARTED, service.output)}


def children(pid: int) -> set[int]:
    """The live (not zombie) child processes of ``pid``, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry))
    return found


def wait_gone(pid: int, timeout: float = 15.0) -> None:
    """Wait until process ``pid`` has terminated (a zombie counts as gone)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        # A pidfd becomes readable when its process terminates.
        readable, _, _ = select.select([fd], [], [], timeout)
        assert readable, f"process {pid} still running after {timeout}s"
    finally:
        os.close(fd)


def assert_exit(service: Service, status: int) -> None:
    assert service.wait() == status, service.output


def served_by(port: int) -> int:
    status, _, body = http_get(port, "/")
    assert status == 200
    return int(json.loads(body)["pid"])


@pytest.mark.parametrize(
    ("signo", "delay"), [(signal.SIGTERM, "0.3"), (signal.SIGINT, "0")]
)
def test_stop_signal_stops_every_worker_after_its_callbacks(
    services: type[Service],
    notify_socket: tuple[socket.socket, str],
    signo: signal.Signals,
    delay: str,
) -> None:
    sock, name = notify_socket
    service, port, pids = start_workers(
        services, NOTIFY_SOCKET=name, SHUTDOWN_DELAY=delay
    )
    for pid in pids:
        service.wait_for(f"event: before_run pid={pid}")
        service.wait_for(f"event: on_start pid={pid}")
    assert sock.recv(64) == b"READY=1"
    assert served_by(port) in pids

    service.send(signo)
    assert_exit(service, 0)
    assert sock.recv(64) == b"STOPPING=1"
    for pid in pids:
        assert service.count(f"event: shutdown pid={pid}") == 1
        assert service.count(rf"drained \(pid {pid}\)") == 1
        assert service.count(f"worker {pid} exited with status 0") == 1
        wait_gone(pid)


def test_before_run_failure_exits_70_without_restarting(
    services: type[Service],
) -> None:
    service = services(APP, env={"WORKERS": "2", "FAIL_BEFORE_RUN": "1"})
    assert_exit(service, runner.EXIT_START_FAILED)
    assert service.count(STARTED) == 2
    assert service.count(r"\(failed to start\), stopping the service") >= 1
    assert service.count("event: on_start") == 0


def test_a_place_that_keeps_dying_is_refilled_with_growing_backoff(
    services: type[Service],
) -> None:
    service, port, pids = start_workers(services)
    victims = [min(pids)]
    # Ready workers: the first death is replaced at once, then each quick
    # death in a row of the same place waits longer.
    for when in ("at once", "in 0.5 s", "in 1.0 s"):
        mark = len(service.lines)
        os.kill(victims[-1], signal.SIGKILL)
        service.wait_for(
            rf"worker {victims[-1]} was killed by SIGKILL \(crashed\), "
            f"replacing it {when}",
            start=mark,
        )
        pattern = rf"worker (\d+) started in place of worker {victims[-1]}"
        replacement = int(service.wait_for(pattern, start=mark).group(1))
        service.wait_for(f"worker {replacement} ready", start=mark)
        victims.append(replacement)
    assert children(service.pid) == pids - {victims[0]} | {victims[-1]}
    assert served_by(port) in pids | {victims[-1]}

    service.send(signal.SIGTERM)
    assert_exit(service, 0)


def test_killed_parent_leaves_no_worker(services: type[Service]) -> None:
    service, _, pids = start_workers(services)
    service.send(signal.SIGKILL)
    for pid in pids:
        # The workers notice on their own and stop gracefully.
        service.wait_for(rf"supervisor is gone, stopping \(pid {pid}\)")
        service.wait_for(f"event: shutdown pid={pid}")
        wait_gone(pid)


@contextlib.contextmanager
def clients_running(
    client: Callable[[threading.Event], None], count: int = 1
) -> Iterator[None]:
    """Run ``count`` threads of ``client(done)`` until the block ends."""
    done = threading.Event()
    threads = [threading.Thread(target=client, args=(done,)) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        done.set()
        for thread in threads:
            thread.join()


def rolling_restart(service: Service, old: set[int]) -> set[int]:
    """SIGHUP; wait until every old worker exited; return the new workers."""
    mark = len(service.lines)
    service.send(signal.SIGHUP)
    service.wait_for("rolling restart finished", start=mark)
    for pid in old:
        service.wait_for(f"worker {pid} exited with status 0", start=mark)
    return children(service.pid)


def test_sighup_replaces_every_worker_without_failed_requests(
    services: type[Service],
) -> None:
    service, port, old = start_workers(services)
    failures: list[str] = []
    served: list[int] = []

    def hammer(done: threading.Event) -> None:
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            try:
                served.append(served_by(port))
            except Exception as error:
                failures.append(repr(error))

    with clients_running(hammer):
        new = rolling_restart(service, old)
        # Only new workers answer now, while the client keeps going.
        assert {served_by(port) for _ in range(20)} <= new

    assert failures == []
    assert len(served) > 20
    assert len(new) == 2
    assert not new & old
    service.send(signal.SIGTERM)
    assert_exit(service, 0)


def test_sighup_to_the_whole_group_leaves_the_restart_to_the_supervisor(
    services: type[Service],
) -> None:
    # A shell that exits sends SIGHUP to the process group of each of its
    # jobs: workers and supervisor alike.  Killed by it, the workers would
    # drop their requests while the supervisor restarts them.
    service, port, old = start_workers(services)
    mark = len(service.lines)

    os.killpg(service.pid, signal.SIGHUP)

    service.wait_for("rolling restart finished", start=mark)
    for pid in old:
        service.wait_for(rf"worker {pid} exited with status 0 \(replaced\)", start=mark)
    assert service.count("killed by|crashed") == 0
    new = children(service.pid)
    assert len(new) == 2
    assert not new & old
    assert served_by(port) in new
    service.send(signal.SIGTERM)
    assert_exit(service, 0)


def test_sighup_under_keep_alive_clients_fails_at_most_a_request_or_two(
    services: type[Service],
) -> None:
    # Clients that reuse their connections, as pools and proxies do: a
    # replaced worker answers what arrives with "Connection: close" and
    # closes a connection only once it has been quiet for a moment.
    service, port, old = start_workers(services)
    failures: list[str] = []
    answered: list[int] = []

    def keep_alive_client(done: threading.Event) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                answered.append(int(json.loads(response.read())["pid"]))
            except (OSError, http.client.HTTPException) as error:
                failures.append(repr(error))
                connection.close()
        connection.close()

    with clients_running(keep_alive_client, count=4):
        new = rolling_restart(service, old)
        count = len(answered)
        deadline = time.monotonic() + 10
        while len(answered) < count + 20 and time.monotonic() < deadline:
            time.sleep(0.01)  # the clients carry on, served elsewhere

    assert len(failures) <= 2, failures
    assert set(answered) & old and set(answered[-20:]) <= new
    service.send(signal.SIGTERM)
    assert_exit(service, 0)


def test_ttin_and_ttou_change_the_number_of_workers(services: type[Service]) -> None:
    service, _, pids = start_workers(services)
    mark = len(service.lines)
    service.send(signal.SIGTTIN)
    added = int(service.wait_for(STARTED, start=mark).group(1))
    service.wait_for(f"worker {added} ready", start=mark)
    assert children(service.pid) == pids | {added}

    mark = len(service.lines)
    service.send(signal.SIGTTOU)
    removed = int(service.wait_for(r"stopping worker (\d+)", start=mark).group(1))
    service.wait_for(rf"worker {removed} exited with status 0 \(removed\)", start=mark)
    assert children(service.pid) == (pids | {added}) - {removed}

    service.send(signal.SIGTERM)
    assert_exit(service, 0)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_health_fails_during_shutdown_delay_while_requests_succeed(
    services: type[Service], workers: str
) -> None:
    service = services(APP, env={"WORKERS": workers, "SHUTDOWN_DELAY": "60"})
    port = service.wait_serving()
    pids = worker_pids(service) if workers == "2" else {service.pid}
    for pid in pids:
        service.wait_for(f"event: on_start pid={pid}")
    status, _, body = http_get(port, "/health")
    assert (status, body) == (200, b'{"status": "ok"}')

    service.send(signal.SIGTERM)
    for pid in pids:
        service.wait_for(
            rf"health check failing, still serving for 60.0 s \(pid {pid}\)"
        )
    status, headers, body = http_get(port, "/health")
    assert (status, body) == (503, b'{"status": "draining"}')
    assert headers["Cache-Control"] == "no-store"
    assert http_get(port, "/")[0] == 200

    # A second signal does not wait for the rest of the delay.  One process
    # then drains and stops; a supervisor kills its workers and says so.
    service.send(signal.SIGTERM)
    if workers == "1":
        assert_exit(service, 0)
        assert service.count("event: shutdown") == 1
    else:
        assert_exit(service, supervisor.EXIT_WORKERS_KILLED)
        assert service.count("event: shutdown") == 0


def test_worker_over_its_stop_budget_is_killed(services: type[Service]) -> None:
    env = {"USE_RUNNER": "1", "SHUTDOWN_LIMIT": "0.2", "BLOCK_SHUTDOWN": "1"}
    service, _, pids = start_workers(services, **env)
    service.send(signal.SIGTERM)
    assert_exit(service, supervisor.EXIT_WORKERS_KILLED)
    for pid in pids:
        assert service.count(f"killing worker {pid}: still running after") == 1
        assert service.count(rf"worker {pid} was killed by SIGKILL \(stopped\)") == 1


def test_drain_answers_a_connection_accepted_just_before_it(
    services: type[Service],
) -> None:
    # The race a rolling restart runs into all the time: a worker accepts a
    # connection, then is told to stop before the request arrived.
    service = services(APP, env={"WORKERS": "1"})
    port = service.wait_serving()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        service.wait_for("event: on_start")
        service.send(signal.SIGTERM)
        service.wait_for(r"draining \(pid")
        client.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert client.recv(65536).startswith(b"HTTP/1.1 200 OK")
    assert_exit(service, 0)


def test_a_stopping_service_refuses_connections_at_once(
    services: type[Service],
) -> None:
    service, port, pids = start_workers(services)
    answers: list[int] = []
    slow = threading.Thread(
        target=lambda: answers.append(http_get(port, "/slow?seconds=3")[0])
    )
    slow.start()
    service.wait_for("event: slow")
    service.send(signal.SIGTERM)
    for pid in pids:
        service.wait_for(rf"draining \(pid {pid}\)")

    # A worker logs "draining" just before it closes its listening socket.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            break
        except ConnectionResetError:
            pass  # queued, then reset as the socket closed
    else:
        pytest.fail("connections still accepted 1.5 s after the drain began")
    assert slow.is_alive()  # one worker still drains its request
    slow.join()
    assert answers == [200]
    assert_exit(service, 0)


def test_ready_workers_killed_in_a_row_are_each_replaced_at_once(
    services: type[Service],
) -> None:
    service = services(APP, env={"WORKERS": "3"})
    service.wait_for(r"all 3 workers ready")
    pids = worker_pids(service)
    mark = len(service.lines)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        service.wait_for(
            rf"worker {pid} was killed by SIGKILL \(crashed\), replacing it at once",
            start=mark,
        )
        pattern = rf"worker (\d+) started in place of worker {pid}"
        replacement = service.wait_for(pattern, start=mark).group(1)
        service.wait_for(f"worker {replacement} ready", start=mark)
    assert len(children(service.pid) - pids) == 3
    service.send(signal.SIGTERM)
    assert_exit(service, 0)


def block_a_worker(port: int) -> socket.socket:
    """Send ``GET /block`` without waiting for an answer."""
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(b"GET /block HTTP/1.1\r\nHost: test\r\n\r\n")
    return client


def test_a_blocked_worker_is_replaced_and_its_stacks_logged(
    services: type[Service],
) -> None:
    service, port, _ = start_workers(services, WORKER_TIMEOUT="1")
    mark = len(service.lines)
    with block_a_worker(port) as client:
        blocked = service.wait_for(r"event: block pid=(\d+)", start=mark).group(1)
        since = time.monotonic()
        pattern = rf"worker (\d+) started in place of worker {blocked}"
        replacement = service.wait_for(pattern, start=mark).group(1)
        service.wait_for(f"worker {replacement} ready", start=mark)
        assert time.monotonic() - since < 1 + 2
        assert client.recv(100) == b""  # its connection died with it

    [dump] = [r for r in records(service) if "sent no heartbeat" in str(r["message"])]
    assert dump["level"] == "ERROR"
    assert str(dump["message"]).startswith(f"worker {blocked} sent no heartbeat")
    stacks = str(dump["exception"])
    assert re.search(r'workers_app.py", line \d+ in get\n\s+time.sleep\(3600\)', stacks)
    assert service.count(
        rf"worker {blocked} was killed by SIGKILL \(timed out\), replacing it at once"
    )
    assert served_by(port) != int(blocked)
    service.send(signal.SIGTERM)
    assert_exit(service, 0)


def test_one_blocked_process_logs_its_stacks_and_exits_for_a_restart(
    services: type[Service],
) -> None:
    service = services(APP, env={"WORKERS": "1", "WORKER_TIMEOUT": "1"})
    port = service.wait_serving()
    service.wait_for("event: on_start")
    with block_a_worker(port):
        service.wait_for("event: block")
        assert_exit(service, heartbeat.EXIT_LOOP_BLOCKED)

    [dump] = [
        r
        for r in records(service)
        if "event loop has been blocked" in str(r["message"])
    ]
    assert dump["level"] == "WARNING"
    assert "time.sleep(3600)" in str(dump["exception"])


def test_max_requests_recycles_workers_without_failing_a_request(
    services: type[Service],
) -> None:
    # A shutdown_delay that recycled workers must not wait for.
    service, port, old = start_workers(
        services, MAX_REQUESTS="20", MAX_REQUESTS_JITTER="5", SHUTDOWN_DELAY="30"
    )
    client = Client(port, "/", "/health")
    try:
        for pid in old:
            service.wait_for(rf"worker {pid} exited with status 0 \(recycled\)")
    finally:
        client.stop()
    assert client.failures == []
    assert len(client.answers) >= 40  # every worker served its share
    assert {status for _, status in client.answers} == {200}
    assert service.count("health check failing") == 0
    assert len(children(service.pid) & old) == 0


def test_ctrl_c_in_a_terminal_stops_every_worker_quietly(
    services: type[Service],
) -> None:
    service = services(APP, env={"WORKERS": "2"}, terminal=True)
    service.wait_for(ALL_READY)
    pids = worker_pids(service)
    service.interrupt()
    assert_exit(service, 0)

    loud = [r for r in records(service) if r["level"] not in ("INFO", "DEBUG")]
    assert loud == []
    assert service.count(r"received SIGINT, stopping 2 workers") == 1
    for pid in pids:
        assert service.count(rf"drained \(pid {pid}\)") == 1
        assert service.count(rf"worker {pid} exited with status 0 \(stopped\)") == 1
