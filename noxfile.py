"""Test sessions beyond ``make test``: ``make matrix`` runs them all.

* ``tests-3.10`` ... ``tests-3.13``: the test suite on each supported Python,
  with the newest release of every dependency.
* ``no_extras``: the test suite without the optional extras, whose tests
  skip, saying which extra they need.
* ``minimum``: the test suite, under coverage, on the oldest supported Python
  with the lowest version every lower bound in pyproject.toml allows; so the
  bounds are the tested ones.
* ``dist``: the sdist and the wheel in ``dist/``, checked as PyPI shows them.
* ``sdist``: the test suite of the unpacked sdist, as a packager runs it.
* ``example``: the pytest example of docs/testing.rst in an environment
  with only pytest and the wheel installed, then with pytest-tornado too.

Environments are made by uv.  Interpreters are found on ``PATH`` and in
pyenv's versions, activated or not; none is downloaded.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tarfile
import tempfile
import zipfile

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
DIST = ROOT / "dist"
EXAMPLE_TEST = ROOT / "examples" / "testing" / "test_orders.py"
EXTRAS = ".[mediatype,sentry,metrics,uvloop]"
EXTENSION_PACKAGE = "examples/extension_package"


# What the minimum-versions session installed of each bounded requirement.
BOUNDED = [
    "tornado",
    "python-dotenv",
    "sprockets.mixins.mediatype",
    "sentry-sdk",
    "prometheus_client",
    "uvloop",
    "pytest",
    "pytest-timeout",
    "pytest-xdist",
    "hypothesis",
    "coverage",
]
SHOW_VERSIONS = (
    "import sys, importlib.metadata as m;"
    " print(*(f'{name}=={m.version(name)}' for name in sys.argv[1:]))"
)


def _test_requirements(pyproject: dict[str, object]) -> tuple[str, ...]:
    # pip too: tests/test_compat_imports.py fetches the published
    # sprockets.http with it, and uv makes environments without pip.
    return (*nox.project.dependency_groups(pyproject, "test"), "pip>=24")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    session.install(
        "-e", EXTRAS, "-e", EXTENSION_PACKAGE, *_test_requirements(PYPROJECT)
    )
    session.run("pytest", *session.posargs)


@nox.session
def no_extras(session: nox.Session) -> None:
    session.install("-e", ".", "-e", EXTENSION_PACKAGE, *_test_requirements(PYPROJECT))
    session.run("pytest", "-rs", *session.posargs)


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


@nox.session
def dist(session: nox.Session) -> None:
    session.install("build[uv]", "twine")
    shutil.rmtree(DIST, ignore_errors=True)
    session.run(
        "python", "-m", "build", "--installer=uv", "--outdir", str(DIST), silent=True
    )
    session.run("twine", "check", "--strict", *map(str, DIST.iterdir()))
    with zipfile.ZipFile(_built("*.whl")) as wheel:
        wheel_names = wheel.namelist()
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel_names):
        session.error("the wheel has no LICENSE")
    with tarfile.open(_built("*.tar.gz")) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        missing = {
            "LICENSE",
            "tests/conftest.py",
            "tests/apps/__init__.py",
            "examples/hello/__main__.py",
            f"{EXTENSION_PACKAGE}/pyproject.toml",
            str(EXAMPLE_TEST.relative_to(ROOT)),
        } - {name.removeprefix(top + "/") for name in sdist.getnames()}
    if missing:
        session.error(f"the sdist lacks {', '.join(sorted(missing))}")


@nox.session(requires=["dist"])
def sdist(session: nox.Session) -> None:
    unpacked = pathlib.Path(session.create_tmp()).resolve() / "sdist"
    shutil.rmtree(unpacked, ignore_errors=True)
    with tarfile.open(_built("*.tar.gz")) as archive:
        archive.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()
    pyproject = nox.project.load_toml(source / "pyproject.toml")
    session.chdir(source)
    session.install(
        f"{_built('*.tar.gz')}[mediatype,sentry,metrics,uvloop]",
        EXTENSION_PACKAGE,
        *_test_requirements(pyproject),
    )
    # The installed package, not the unpacked source, is under test.
    shutil.rmtree(source / "sprockets_http")
    shutil.rmtree(source / "sprockets_http_pytest")
    session.run("pytest", *session.posargs)


# On the newest Python, where pytest-tornado needs the most help to install.
@nox.session(python=PYTHONS[-1], requires=["dist"])
@nox.parametrize("pytest_tornado", [False, True], ids=["bare", "pytest-tornado"])
def example(session: nox.Session, pytest_tornado: bool) -> None:
    requirements = [str(_built("*.whl")), "pytest"]
    if pytest_tornado:
        # pytest-tornado 0.8.1 imports pkg_resources, which setuptools
        # dropped in version 81 and new environments no longer have.
        requirements += ["pytest-tornado", "setuptools<81"]
    session.install(*requirements)
    # Outside this checkout, so that pytest sees none of its configuration.
    with tempfile.TemporaryDirectory(prefix="sprockets-http-example-") as project:
        shutil.copy(EXAMPLE_TEST, project)
        session.chdir(project)
        session.run("pytest", "-v", "-p", "no:cacheprovider", *session.posargs)
        # The fixtures came from the plugin that should provide them, and
        # only from that one.
        listing = str(session.run("pytest", "--fixtures", silent=True))
    ours, theirs = "sprockets_http_pytest._tornado", "pytest_tornado.plugin"
    expected, unexpected = (theirs, ours) if pytest_tornado else (ours, theirs)
    if f"defined from {expected} " not in listing or unexpected in listing:
        session.error(f"io_loop and its kin should come from {expected} alone")


def _built(pattern: str) -> pathlib.Path:
    (path,) = DIST.glob(pattern)
    return path
