#!/usr/bin/env python3
"""Run the test suites of code written for sprockets.http against this project.

``make compat`` runs this with the machine's ``python3``.  It creates (once)
the virtual environment ``.venv-compat/`` with this project installed in
editable mode, sprockets-postgres 1.8.1 installed without its dependencies
(it declares ``sprockets.http<3``) next to the dependencies it really uses,
and pytest; then it runs the suites below, each with ``sprockets.http``
mapped to ``sprockets_http`` by ``pytest -p sprockets_http.compat``, each
test bounded in time, each suite in its own process group, killed at the
end.  Reports go to ``.venv-compat/reports/``; the exit status is 1 when a
suite had a failure or an error.

Suites run every time:

``statsd``
    the tests in the sprockets-statsd 1.0.0 source distribution, downloaded
    from PyPI;
``postgres-service``
    this project's ``tests/test_compat_postgres.py``: a sprockets-postgres
    service in a real process against a throwaway PostgreSQL (skipped when
    the machine has no PostgreSQL server programs).

Suites run when given a directory holding a copy of the repository's files
at the released tag (this script fetches nothing but packages from PyPI):

``postgres`` (``--postgres-tests DIR``, sprockets-postgres at tag 1.8.1)
    its ``tests.py`` and ``fixtures/testing.sql`` against a throwaway
    PostgreSQL; the two ``SRVTestCase`` tests that query public DNS are
    deselected;
``sprockets.http`` (``--sprockets-http-tests DIR``, sprockets.http at tag
2.5.1)
    its ``tests.py`` and ``examples.py``.

The copies are made in ``.venv-compat/work/``; nothing of the originals is
changed.  ``compat/shims/`` is on ``PYTHONPATH`` for the suites: a stand-in
for ``asynctest`` (which does not import on Python 3.11 and later) and a
pytest plugin restoring the module name ``aiopg.cursor`` for the
sprockets-postgres suite (see each module's docstring).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import venv
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "compat"
VENV = ROOT / ".venv-compat"
PYTHON = VENV / "bin" / "python"
WORK = VENV / "work"
REPORTS = VENV / "reports"
DOWNLOADS = VENV / "downloads"

STATSD = "sprockets-statsd==1.0.0"
POSTGRES = "sprockets-postgres==1.8.1"
REQUIREMENTS = [
    "pytest>=8,<10",
    "pytest-timeout",
    # What sprockets-postgres 1.8.1 needs, without sprockets.http; pycares 5
    # dropped what aiodns 2 uses.
    "aiopg>=1,<2",
    "aiodns>=2,<3",
    "pycares<5",
    "psycopg2-binary",
    "tornado>=6,<7",
    # The sprockets-postgres suite's own imports.
    "tornado-problem-details",
    # The sprockets.http 2.5.1 suite patches sentry_sdk.init.
    "sentry-sdk",
]
SRV_TESTS_ON_PUBLIC_DNS = [
    "tests.py::SRVTestCase::test_srv_result",
    "tests.py::SRVTestCase::test_srv_error",
]
SUITE_TIMEOUT = 300.0


@dataclass
class Outcome:
    """What one suite did."""

    name: str
    status: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    note: str = ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres-tests",
        type=Path,
        metavar="DIR",
        help="files of sprockets-postgres at tag 1.8.1 (tests.py, fixtures/)",
    )
    parser.add_argument(
        "--sprockets-http-tests",
        type=Path,
        metavar="DIR",
        help="files of sprockets.http at tag 2.5.1 (tests.py, examples.py)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["statsd", "postgres-service", "postgres", "sprockets.http"],
        help="run only this suite (may be repeated)",
    )
    options = parser.parse_args(argv)
    started = time.monotonic()
    prepare_environment()
    suites: dict[str, Callable[[], Outcome]] = {
        "statsd": run_statsd,
        "postgres-service": run_postgres_service,
        "postgres": lambda: run_postgres(options.postgres_tests),
        "sprockets.http": lambda: run_sprockets_http(options.sprockets_http_tests),
    }
    wanted = options.only or [
        "statsd",
        "postgres-service",
        *(["postgres"] if options.postgres_tests else []),
        *(["sprockets.http"] if options.sprockets_http_tests else []),
    ]
    outcomes = [suites[name]() for name in wanted]
    report(outcomes, time.monotonic() - started)
    return 1 if any(outcome.status for outcome in outcomes) else 0


def say(text: str) -> None:
    print(f"compat: {text}", flush=True)


# --- the environment ---------------------------------------------------------


def prepare_environment() -> None:
    """Create .venv-compat and install what the suites need, once."""
    wanted = "\n".join([*REQUIREMENTS, POSTGRES, STATSD]).encode()
    key = hashlib.sha256(wanted + (ROOT / "pyproject.toml").read_bytes())
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == key.hexdigest():
        return
    say(f"creating {VENV.relative_to(ROOT)}")
    shutil.rmtree(VENV, ignore_errors=True)
    venv.create(VENV, with_pip=True)
    pip = [str(PYTHON), "-m", "pip", "-qq", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-e", str(ROOT), *REQUIREMENTS], check=True)
    # Both declare sprockets.http, which must not be installed.
    subprocess.run([*pip, "install", "--no-deps", POSTGRES, STATSD], check=True)
    subprocess.run(
        [
            *(*pip, "download", "--no-deps", "--no-binary", ":all:"),
            *("--dest", str(DOWNLOADS), STATSD),
        ],
        check=True,
    )
    stamp.write_text(key.hexdigest())


def fresh_directory(name: str) -> Path:
    directory = WORK / name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


# --- the suites --------------------------------------------------------------


def run_statsd() -> Outcome:
    """sprockets-statsd's tests, from its source distribution."""
    (archive,) = DOWNLOADS.glob("sprockets[-_]statsd-*.tar.gz")
    directory = fresh_directory("statsd")
    with tarfile.open(archive) as sdist:
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12, 3.11.4 and later
            sdist.extractall(directory, filter="data")
        else:
            sdist.extractall(directory)  # a PyPI sdist
    (source,) = directory.iterdir()
    return run_pytest("statsd", source, ["tests"])


def run_postgres_service() -> Outcome:
    """This project's test of a sprockets-postgres service."""
    return run_pytest(
        "postgres-service", ROOT, ["tests/test_compat_postgres.py"], ours=True
    )


def run_postgres(checkout: Path | None) -> Outcome:
    """sprockets-postgres's tests against a throwaway PostgreSQL."""
    if checkout is None:
        return Outcome("postgres", note="not run: give --postgres-tests DIR")
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres_cluster import Cluster, server_programs

    bindir = server_programs()
    if bindir is None:
        return Outcome("postgres", status=1, note="no PostgreSQL server programs")
    directory = fresh_directory("postgres")
    shutil.copy(checkout / "tests.py", directory)
    with Cluster(bindir) as cluster:
        cluster.psql("--quiet", "--file", str(checkout / "fixtures" / "testing.sql"))
        # What the repository's bootstrap script writes for the tests.
        (directory / "build").mkdir()
        (directory / "build" / "test-environment").write_text(
            "export ASYNC_TEST_TIMEOUT=5\n"
            f"export POSTGRES_URL={cluster.url}?application_name=sprockets_postgres\n"
        )
        arguments = ["-p", "renamed_aiopg_cursor", "tests.py"]
        for test in SRV_TESTS_ON_PUBLIC_DNS:
            arguments += ["--deselect", test]
        return run_pytest("postgres", directory, arguments)


def run_sprockets_http(checkout: Path | None) -> Outcome:
    """sprockets.http 2.5.1's own tests, its imports mapped to this project."""
    if checkout is None:
        return Outcome("sprockets.http", note="not run: give --sprockets-http-tests")
    directory = fresh_directory("sprockets.http")
    for name in ("tests.py", "examples.py"):
        shutil.copy(checkout / name, directory)
    return run_pytest("sprockets.http", directory, ["tests.py"])


def run_pytest(
    name: str, directory: Path, arguments: list[str], *, ours: bool = False
) -> Outcome:
    """Run pytest in ``directory`` in its own process group.

    :param ours: run with this project's pytest configuration rather than
        compat/pytest.ini and the sprockets.http mapping
    """
    REPORTS.mkdir(parents=True, exist_ok=True)
    junit = REPORTS / f"{name}.xml"
    log = REPORTS / f"{name}.log"
    junit.unlink(missing_ok=True)
    command = [str(PYTHON), "-m", "pytest", "-p", "no:cacheprovider", "-rfE"]
    if not ours:
        command += ["-c", str(HERE / "pytest.ini"), "--rootdir", str(directory)]
        command += ["-p", "sprockets_http.compat"]
    else:
        # Its test in one process: pytest-xdist is not installed here.
        command += ["-o", "addopts="]
    command += [f"--junitxml={junit}", *arguments]
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE / "shims"), environment.get("PYTHONPATH")])
    )
    say(f"{name}: running in {directory.relative_to(ROOT)} (log: {log})")
    started = time.monotonic()
    with (
        log.open("w") as output,
        running(command, cwd=directory, env=environment, stdout=output) as process,
    ):
        try:
            status = process.wait(SUITE_TIMEOUT)
        except subprocess.TimeoutExpired:
            status = -1
    outcome = Outcome(name, status=status, seconds=time.monotonic() - started)
    if status == -1:
        outcome.note = f"killed after {SUITE_TIMEOUT:.0f}s"
    read_junit(junit, outcome)
    if status == 5:  # pytest: nothing collected or everything deselected
        outcome.status = 1
    return outcome


@contextlib.contextmanager
def running(command: list[str], **options: object) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` in a new process group; kill the group at the end."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **options,  # type: ignore[call-overload]
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def read_junit(path: Path, outcome: Outcome) -> None:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "xfailed": 0}
    if not path.exists():
        outcome.note = outcome.note or "no report (see the log)"
        outcome.status = outcome.status or 1
        outcome.counts = counts
        return
    for case in ElementTree.parse(path).iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds or "error" in kinds:
            kind = "failed" if "failure" in kinds else "errors"
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            message = (problem.get("message") if problem is not None else "") or ""
            first_line = message.strip().splitlines()[0] if message.strip() else ""
            outcome.failures.append(f"{test_id}: {first_line[:160]}")
        elif "skipped" in kinds:
            skipped = case.find("skipped")
            xfail = skipped is not None and skipped.get("type") == "pytest.xfail"
            kind = "xfailed" if xfail else "skipped"
        else:
            kind = "passed"
        counts[kind] += 1
    outcome.counts = counts


def report(outcomes: list[Outcome], seconds: float) -> None:
    totals = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "xfailed": 0}
    for outcome in outcomes:
        for kind, number in outcome.counts.items():
            totals[kind] += number
        figures = ", ".join(f"{n} {kind}" for kind, n in outcome.counts.items())
        note = f" ({outcome.note})" if outcome.note else ""
        say(f"{outcome.name}: {figures or 'nothing'} in {outcome.seconds:.0f}s{note}")
        for failure in outcome.failures:
            print(f"    {failure}")
    say(f"all suites took {seconds:.0f}s; reports in {REPORTS.relative_to(ROOT)}")
    failed = totals["failed"] + totals["errors"]
    print(
        f"compat: {totals['passed']} passed, {failed} failed, "
        f"{totals['skipped'] + totals['xfailed']} skipped"
    )


if __name__ == "__main__":
    sys.exit(main())
