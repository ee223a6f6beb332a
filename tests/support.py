"""Real service processes for tests, and a plain HTTP client.

:class:`Service` starts Python programs in their own process group with their
output captured line by line.  Tests wait for log lines (no sleeping), send
real signals, and every process group still alive at the end of the test is
killed, even when the test failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING = re.compile(r"serving on port (\d+)")


class Service:
    """A Python program running in its own process group.

    :param args: arguments after ``python``, e.g. ``["-m", "examples.hello"]``
    :param env: variables added to a copy of this process's environment
        (:data:`None` removes a variable); ``PORT`` defaults to ``0`` so the
        kernel picks a free port
    :param pass_fds: file descriptors the program inherits, as numbered here
    :param wrapper: a command that runs ``python`` (e.g. ``taskset -c 0``)
    :param terminal: run it on a pseudo-terminal, its controlling terminal,
        as in a shell's foreground (see :meth:`interrupt`)
    """

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str | None] | None = None,
        *,
        pass_fds: Sequence[int] = (),
        wrapper: Sequence[str] = (),
        terminal: bool = False,
    ):
        environment = {**os.environ, "PORT": "0", "PYTHONUNBUFFERED": "1"}
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [ROOT, os.environ.get("PYTHONPATH")])
        )
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        # Where its output comes from: a pipe, or the terminal's master side.
        self._terminal: int | None = None
        if terminal:
            self._terminal, tty = os.openpty()
            streams = {"stdin": tty, "stdout": tty, "stderr": tty}
        else:
            streams = {
                "stdin": subprocess.DEVNULL,
                "stdout": subprocess.PIPE,
                "stderr": subprocess.STDOUT,
            }
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, *args],
            cwd=ROOT,
            pass_fds=pass_fds,
            env=environment,
            start_new_session=True,
            text=True,
            # In its new session, the terminal becomes its controlling one.
            preexec_fn=_take_terminal if terminal else None,
            **streams,
        )
        if self._terminal is not None:
            os.close(tty)
            self._output: IO[str] = open(  # noqa: SIM115 (closed by _read)
                self._terminal, encoding="utf-8", errors="replace", closefd=False
            )
        else:
            assert self.process.stdout is not None
            self._output = self.process.stdout
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def _read(self) -> None:
        # A terminal's reader gets EIO once no process has it open.
        with self._output, contextlib.suppress(OSError):
            for line in self._output:
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def interrupt(self) -> None:
        """Type Ctrl-C on its terminal: SIGINT to its whole process group."""
        assert self._terminal is not None, "started without terminal=True"
        os.write(self._terminal, b"\x03")

    def wait_for(
        self, pattern: str, timeout: float = 15.0, start: int = 0
    ) -> re.Match[str]:
        """Wait until an output line (from line ``start`` on) matches ``pattern``.

        :raises AssertionError: on timeout or when the process's output ends
            first, with the output so far
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._changed:
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    index += 1
                    if match:
                        return match
                finished = not self._reader.is_alive()
                remaining = deadline - time.monotonic()
                if finished or remaining <= 0:
                    raise AssertionError(
                        f"no line matching {pattern!r} "
                        f"({'output ended' if finished else 'timed out'}):\n"
                        + "".join(self.lines)
                    )
                self._changed.wait(remaining)

    def count(self, pattern: str) -> int:
        """How many output lines so far match ``pattern``."""
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.lines if regex.search(line))

    def wait_serving(self, timeout: float = 15.0) -> int:
        """Wait for the "serving on port N" line and return N."""
        return int(self.wait_for(SERVING.pattern, timeout).group(1))

    def send(self, signo: int) -> None:
        """Send ``signo`` to the process (not to its group)."""
        os.kill(self.process.pid, signo)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit and return its status."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout}s:\n{self.output}"
            ) from None
        self._reader.join(timeout)
        return status

    def kill_group(self) -> None:
        """SIGKILL every process in the group; harmless when none is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self._reader.join(5)
        if self._terminal is not None:
            os.close(self._terminal)
            self._terminal = None


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def free_port() -> int:
    """A TCP port that nothing listens on right now, for a service to bind."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def http_get(
    port: int,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    *,
    host: str = "127.0.0.1",
    source: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` from ``host``:``port`` on a fresh connection.

    :param source: the client's own address (e.g. ``127.0.0.2``, which Linux
        routes to the loopback interface too)
    """
    connection = http.client.HTTPConnection(
        host,
        port,
        timeout=timeout,
        source_address=None if source is None else (source, 0),
    )
    return _get(connection, path, headers)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def unix_http_get(
    socket_path: str,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` over the unix socket ``socket_path`` on a fresh connection."""
    return _get(_UnixConnection(socket_path, timeout), path, headers)


def _get(
    connection: http.client.HTTPConnection,
    path: str,
    headers: Mapping[str, str] | None,
) -> tuple[int, dict[str, str], bytes]:
    try:
        connection.request("GET", path, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def records(service: Service) -> list[dict[str, object]]:
    """The service's JSON log records (other output lines are left out)."""
    found = []
    for line in service.lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "level" in record:
                found.append(record)
    return found


class Client:
    """Requests ``paths`` in turn, on fresh connections, until stopped."""

    def __init__(self, port: int, *paths: str) -> None:
        self.port = port
        self.paths = paths or ("/",)
        self.answers: list[tuple[str, int]] = []
        self.failures: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 30
        while not self._done.is_set() and time.monotonic() < deadline:
            for path in self.paths:
                try:
                    self.answers.append((path, http_get(self.port, path)[0]))
                except Exception as error:
                    self.failures.append(f"{path}: {error!r}")

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
