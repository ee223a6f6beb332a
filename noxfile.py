"""Test sessions beyond ``make test``: ``make matrix`` runs them all.

* ``tests-3.10`` ... ``tests-3.13``: the test suite on each supported Python,
  with the newest release of every dependency.
* ``minimum``: the test suite, under coverage, on the oldest supported Python
  with the lowest version every lower bound in pyproject.toml allows; so the
  bounds are the tested ones.

Environments are made by uv.  Interpreters are found on ``PATH`` and in
pyenv's versions, activated or not; none is downloaded.
"""

from __future__ import annotations

import os
import pathlib

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def _pyenv_pythons_on_path() -> None:
    """Put the Pythons pyenv installed on PATH, whether active or not.

    pyenv's shims run only the versions it has activated; a machine with
    every supported Python installed through pyenv should need no set-up to
    run every session.  The newest patch release of a version comes first.
    """
    root = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv"))

    def version(path: pathlib.Path) -> list[int]:
        return [
            int(part) if part.isdigit() else -1 for part in path.parent.name.split(".")
        ]

    found = sorted(root.glob("versions/*/bin"), key=version, reverse=True)
    os.environ["PATH"] = os.pathsep.join([*map(str, found), os.environ.get("PATH", "")])


_pyenv_pythons_on_path()
ROOT = pathlib.Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
EXTRAS = ".[mediatype,sentry]"
EXTENSION_PACKAGE = "examples/extension_package"


# What the minimum-versions session installed of each bounded requirement.
BOUNDED = [
    "tornado",
    "python-dotenv",
    "sprockets.mixins.mediatype",
    "sentry-sdk",
    "pytest",
    "pytest-timeout",
    "hypothesis",
    "coverage",
]
SHOW_VERSIONS = (
    "import sys, importlib.metadata as m;"
    " print(*(f'{name}=={m.version(name)}' for name in sys.argv[1:]))"
)


def _test_requirements(pyproject: dict[str, object]) -> tuple[str, ...]:
    return nox.project.dependency_groups(pyproject, "test")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    session.install(
        "-e", EXTRAS, "-e", EXTENSION_PACKAGE, *_test_requirements(PYPROJECT)
    )
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def minimum(session: nox.Session) -> None:
    # lowest-direct: the lowest version each of our own requirements allows
    # (the package's, its extras' and the test group's); what those need in
    # turn resolves as usual.
    session.install(
        "--resolution=lowest-direct",
        "-e",
        EXTRAS,
        "-e",
        EXTENSION_PACKAGE,
        *_test_requirements(PYPROJECT),
    )
    session.run("python", "-c", SHOW_VERSIONS, *BOUNDED)
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report")
    # The floors beside the newest pytest: Tornado's unittest-style test
    # cases must still be collected (Tornado < 6.4.1 broke there).
    session.install("--upgrade", "pytest")
    session.run("pytest", "--collect-only", "-qq", "-p", "no:cacheprovider")
