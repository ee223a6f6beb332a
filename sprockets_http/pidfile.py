"""The PID file: where tools that signal the service find its main process.

With the ``pid_file`` setting, :func:`sprockets_http.run` refuses to start
while the file names a running process (another instance of the service),
writes its own pid there once its sockets are bound, and removes the file
when it exits.  With several processes that is the supervising parent's
pid: the one to send SIGHUP, SIGTERM, SIGTTIN and SIGTTOU to.

.. versionadded:: 3.0.0
"""

from __future__ import annotations

import contextlib
import os


class PidFileError(Exception):
    """The PID file names a process that is running, or is not a PID file.

    .. versionadded:: 3.0.0
    """


def path(value: object) -> str:
    """The ``pid_file`` setting: a file in a directory this process can write.

    :raises ValueError: when the directory does not exist or cannot be
        written to, or the path is a directory
    """
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError("must be a file name")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("must be a file name")
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise ValueError(f"must be in an existing directory, {directory!r} is not")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(
            f"must be in a directory this process can write, not {directory!r}"
        )
    if os.path.isdir(text):
        raise ValueError("must be a file name, not a directory")
    return text


class PidFile:
    """The PID file at ``path``.

    .. versionadded:: 3.0.0
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # Removed at exit from wherever the service's working directory is.
        self._absolute = os.path.abspath(path)

    def check(self) -> None:
        """Refuse a file that names another running process.

        A file naming a process that no longer runs (or this very process,
        as PID 1 of a restarted container may find its own) is stale and
        will be replaced.

        :raises PidFileError: saying which process the file names, or that
            the file holds something other than a process id (it is left
            alone: it may not be a PID file at all)
        """
        pid = self._read()
        if pid is not None and pid != os.getpid() and _running(pid):
            raise PidFileError(
                f"PID file {self.path!r} names process {pid}, which is running"
            )

    def write(self) -> None:
        """Write this process's pid, replacing the file in one step.

        :raises PidFileError: when the file cannot be written
        """
        partial = f"{self._absolute}.{os.getpid()}.tmp"
        try:
            with open(partial, "w", encoding="ascii") as stream:
                stream.write(f"{os.getpid()}\n")
            os.replace(partial, self._absolute)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise PidFileError(
                f"cannot write PID file {self.path!r}: {error.strerror}"
            ) from None

    def remove(self) -> None:
        """Remove the file, if it still names this process.

        A file another instance has written since is left alone.
        """
        try:
            if self._read() == os.getpid():
                os.unlink(self._absolute)
        except (OSError, PidFileError):
            pass

    def _read(self) -> int | None:
        try:
            with open(self._absolute, encoding="ascii", errors="replace") as stream:
                text = stream.read(64).strip()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise PidFileError(
                f"cannot read PID file {self.path!r}: {error.strerror}"
            ) from None
        if not text:
            return None  # a write cut short
        if not (text.isascii() and text.isdigit()):
            raise PidFileError(
                f"PID file {self.path!r} does not hold a process id: {text[:20]!r}"
            )
        return int(text)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, and belongs to another user
    return True
