"""A throwaway PostgreSQL server on a loopback port, for compatibility tests.

:class:`Cluster` initialises a database cluster in a new temporary directory
with the server programs of the machine (``initdb`` on ``PATH``, else the
newest ``/usr/lib/postgresql/*/bin``), starts ``postgres`` listening on
127.0.0.1 only, without a Unix socket, trusting local connections, and
removes everything when it stops.  PostgreSQL refuses to run as root, so as
root the server runs as the ``postgres`` user (``nobody`` when there is
none).  The server runs through :class:`support.Service`: in its own process
group, its output captured, killed with its group at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from types import TracebackType

from support import Service, free_port

# Service starts Python; this replaces it with the server, as the user the
# server must run as (the process, its group and its output stay the same).
_EXEC_AS = """
import os, sys
uid, gid = int(sys.argv[1]), int(sys.argv[2])
if os.getuid() == 0:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
os.execv(sys.argv[3], sys.argv[3:])
"""


def server_programs() -> str | None:
    """The directory of ``initdb`` and ``postgres``, or None when absent."""
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(path.split("/")[-3]),
    )
    return os.path.dirname(found[-1]) if found else None


def _server_user() -> tuple[int, int]:
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError("no user to run PostgreSQL as")


class Cluster:
    """A PostgreSQL server for one test run; use it as a context manager.

    :param bindir: the directory of the server programs, see
        :func:`server_programs`

    .. attribute:: url

       ``postgresql://postgres@127.0.0.1:PORT/postgres``, once started.
    """

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.directory = ""
        self.server: Service | None = None

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        """Initialise the cluster and wait until the server accepts connections.

        :raises subprocess.CalledProcessError: when ``initdb`` fails
        :raises AssertionError: when the server does not get ready in time
        """
        uid, gid = _server_user()
        self.directory = tempfile.mkdtemp(prefix="sprockets-http-postgres-")
        os.chown(self.directory, uid, gid)
        data = os.path.join(self.directory, "data")
        root = os.getuid() == 0
        subprocess.run(
            [
                *(os.path.join(self.bindir, "initdb"), "--pgdata", data),
                *("--username", "postgres", "--auth", "trust", "--no-sync"),
                *("--encoding", "UTF8", "--no-locale"),
            ],
            check=True,
            capture_output=True,
            cwd=self.directory,
            timeout=timeout,
            user=uid if root else None,
            group=gid if root else None,
            extra_groups=[] if root else None,
        )
        self.server = Service(
            [
                *("-c", _EXEC_AS, str(uid), str(gid)),
                *(os.path.join(self.bindir, "postgres"), "-D", data),
                *("-p", str(self.port), "-c", "listen_addresses=127.0.0.1"),
                *("-c", "unix_socket_directories=", "-c", "fsync=off"),
            ]
        )
        self.server.wait_for("ready to accept connections", timeout)

    def psql(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``psql`` against the server and return its output.

        :raises subprocess.CalledProcessError: when ``psql`` fails
        """
        psql = os.path.join(self.bindir, "psql")
        if not os.path.exists(psql):
            psql = shutil.which("psql") or "psql"
        return subprocess.run(
            [psql, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", self.url, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        ).stdout

    def stop(self) -> None:
        """Shut the server down fast, kill what is left, remove the files."""
        if self.server is not None:
            with contextlib.suppress(ProcessLookupError):
                self.server.send(signal.SIGINT)  # PostgreSQL's fast shutdown
            with contextlib.suppress(AssertionError):
                self.server.wait(15)
            self.server.kill_group()
            self.server = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = ""
