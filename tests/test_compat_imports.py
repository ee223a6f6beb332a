"""The ``sprockets.http`` opt-in (:mod:`sprockets_http.compat`), by real imports.

Each case runs a fresh interpreter, since an import can happen only once
per process: without ``sprockets.http`` installed, and with the published
2.5.1 wheel installed in a directory on ``PYTHONPATH`` (downloaded once per
session; the cases that need it are skipped when the package index cannot
be reached).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import dotenv
import pytest
import tornado
from support import ROOT

import sprockets_http

PUBLISHED = "sprockets.http==2.5.1"


def python(
    code: str, pythonpath: Path | None = None, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` (or ``python ARGS`` when code is empty)."""
    paths = [str(pythonpath)] if pythonpath else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, ROOT])}
    command = [sys.executable, *(["-c", textwrap.dedent(code)] if code else []), *args]
    return subprocess.run(
        command,
        env=env,
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def script(*parts: str) -> str:
    """Join pieces of Python code, each indented as it likes."""
    return "\n".join(textwrap.dedent(part) for part in parts)


def succeeds(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the published sprockets.http 2.5.1, for PYTHONPATH."""
    target = tmp_path_factory.mktemp("published")
    try:
        installed = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"),
                *("--disable-pip-version-check", "--target", str(target), PUBLISHED),
            ],
            capture_output=True,
            text=True,
            timeout=50,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip could not install {PUBLISHED} in time")
    if installed.returncode != 0:
        pytest.skip(f"pip could not install {PUBLISHED}: {installed.stderr[-500:]}")
    return target


# What the cases run in their interpreters.
INSTALL = """
    from sprockets_http.compat import install
    install()
"""

MAPPED = """
    import sprockets_http, sprockets_http.app, sprockets_http.mixins
    import sprockets_http.runner, sprockets_http.testing

    import sprockets.http
    import sprockets.http.app, sprockets.http.mixins
    from sprockets.http import runner, testing

    assert sprockets.http is sprockets_http
    assert sprockets.http.app is sprockets_http.app
    assert sprockets.http.mixins is sprockets_http.mixins
    assert runner is sprockets_http.runner
    assert testing is sprockets_http.testing
    assert sprockets_http.app.__spec__.name == "sprockets_http.app"
"""


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is not there either
        return False


# The rest of the "sprockets" namespace still imports: where the [mediatype]
# extra is installed, which is also the only place it can be checked.
MEDIATYPE_IMPORTS = (
    """
    from sprockets.mixins.mediatype import content
    assert "site-packages" in content.__file__, content.__file__
    """
    if _installed("sprockets.mixins.mediatype")
    else ""
)


def test_without_the_opt_in_sprockets_http_is_not_there() -> None:
    result = python("import sprockets.http")

    assert result.returncode == 1
    # 'sprockets' alone when no package provides the namespace (no
    # sprockets.mixins.mediatype either).
    assert re.search(
        r"ModuleNotFoundError: No module named 'sprockets(\.http)?'$",
        result.stderr,
        re.MULTILINE,
    ), result.stderr


def test_install_maps_every_module_to_this_project() -> None:
    succeeds(
        python(
            script(
                INSTALL,
                "install()  # again: nothing changes",
                MAPPED,
                MEDIATYPE_IMPORTS,
            )
        )
    )


def test_install_works_where_no_sprockets_namespace_is_installed(
    tmp_path: Path,
) -> None:
    # Only this project and its dependencies: no site-packages, so no
    # sprockets.mixins.mediatype providing a "sprockets" namespace.  The
    # project is linked too, since it may be installed rather than here.
    for package in (tornado, dotenv, sprockets_http):
        source = Path(package.__file__ or "").parent
        (tmp_path / source.name).symlink_to(source, target_is_directory=True)
    isolated = ["-S", "-c", script(INSTALL, MAPPED, "print(sprockets.__path__)")]

    output = succeeds(python("", tmp_path, *isolated))

    assert output == "[]\n"  # the empty namespace the opt-in provides


def test_a_patch_through_the_old_name_patches_this_project() -> None:
    succeeds(
        python("""
            from unittest import mock
            import sprockets_http.compat
            sprockets_http.compat.install()
            import sprockets_http.app

            class Application(sprockets_http.app.Application):
                pass

            with mock.patch("sprockets.http.app.Application.stop") as stop:
                Application().stop("loop")
            stop.assert_called_once_with("loop")
        """)
    )


def test_a_module_this_project_lacks_is_not_found_under_the_old_name() -> None:
    result = python("""
        import sprockets_http.compat
        sprockets_http.compat.install()
        import sprockets.http.no_such_module
    """)

    assert result.returncode == 1
    assert "No module named 'sprockets.http.no_such_module'" in result.stderr


def test_the_published_package_imports_as_usual_without_the_opt_in(
    published: Path,
) -> None:
    output = succeeds(
        python(
            script(
                """
                import sprockets.http, sprockets.http.app
                import sprockets_http, sprockets_http.compat
                assert sprockets.http is not sprockets_http
                assert not sprockets_http.compat.is_installed()
                print(sprockets.http.__version__, sprockets.http.app.__file__)
                """,
                MEDIATYPE_IMPORTS,
            ),
            published,
        )
    )

    version, path = output.split()
    assert version == "2.5.1"
    assert path.startswith(str(published))


def test_the_opt_in_wins_over_the_published_package(published: Path) -> None:
    succeeds(python(script(INSTALL, MAPPED, MEDIATYPE_IMPORTS), published))


def test_install_after_the_published_package_was_imported_fails(
    published: Path,
) -> None:
    result = python(
        """
        import sprockets.http
        import sprockets_http.compat
        sprockets_http.compat.install()
        """,
        published,
    )

    assert result.returncode == 1
    assert "RuntimeError: sprockets.http was imported from" in result.stderr
    assert "call install() first" in result.stderr


def test_pytest_plugin_maps_imports_of_test_modules(
    published: Path, tmp_path: Path
) -> None:
    (tmp_path / "conftest.py").write_text("import sprockets.http.app\n")
    (tmp_path / "test_old_imports.py").write_text(
        textwrap.dedent("""
            import sprockets.http.testing
            import sprockets_http.testing

            def test_mapped():
                assert sprockets.http.testing is sprockets_http.testing
        """)
    )
    arguments = ["-m", "pytest", "-p", "sprockets_http.compat", "-p"]
    arguments += ["no:cacheprovider", "-q", "test_old_imports.py"]

    output = succeeds(python("", published, *arguments, cwd=tmp_path))

    assert "1 passed" in output


def test_python_m_runs_a_module_with_the_mapping(
    published: Path, tmp_path: Path
) -> None:
    (tmp_path / "old_service.py").write_text(
        textwrap.dedent("""
            import sys
            import sprockets.http, sprockets_http
            assert sprockets.http is sprockets_http
            print(__name__, sys.argv[1:])
        """)
    )
    arguments = ["-m", "sprockets_http.compat", "old_service", "--flag", "x"]

    output = succeeds(python("", published, *arguments, cwd=tmp_path))

    assert output == "__main__ ['--flag', 'x']\n"


def test_python_m_without_a_module_prints_its_usage() -> None:
    result = python("", None, "-m", "sprockets_http.compat")

    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m sprockets_http.compat MODULE")
