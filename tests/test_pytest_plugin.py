"""The pytest plugin as a service's test suite meets it, in pytest runs of its own.

Each test writes a small test module, runs pytest on it (in this process,
through pytester, unless the test is about what gets imported) and reads the
outcome.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

# Warnings are errors, but for pytester's own: in this process the package
# was imported before the inner run could rewrite its asserts.  Hypothesis's
# plugin would import all of Hypothesis again in every inner run.
STRICT = (
    "-W",
    "error",
    "-W",
    "ignore::pytest.PytestAssertRewriteWarning",
    "-p",
    "no:hypothesispytest",
)


@pytest.fixture(autouse=True)
def configuration_of_its_own(pytester: pytest.Pytester) -> None:
    # Each inner run's rootdir is its temporary directory, even when that
    # lies inside this project (nox's TMPDIR): this project's options
    # (parallel workers, filters) are not for it.
    pytester.makeini("[pytest]\n")


APP = """
import pytest
from tornado import web

class Hello(web.RequestHandler):
    def get(self):
        self.write("hello")

@pytest.fixture
def app():
    return web.Application([("/", Hello)])
"""


def test_a_run_that_uses_no_fixture_imports_no_tornado(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            heavy = sorted(
                name for name in sys.modules
                if name.split(".")[0] == "tornado" or name == "sprockets_http.app"
            )
            print("imported:", heavy)
            manager = config.pluginmanager
            print("registered:", [
                name for name in ("sprockets_http", "sprockets_http.tornado")
                if manager.hasplugin(name)
            ])
        """
    )
    pytester.makepyfile("def test_nothing(): pass")
    # A process of its own: in this one, Tornado is long imported.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    assert "imported: []" in result.stdout
    assert "registered: ['sprockets_http', 'sprockets_http.tornado']" in result.stdout


def test_an_async_test_gets_server_client_and_url(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        APP
        + """
@pytest.mark.gen_test
async def test_hello(http_client, base_url, http_port):
    assert base_url == f"http://127.0.0.1:{http_port}"
    response = await http_client.fetch(base_url + "/")
    assert response.body == b"hello"
"""
    )
    pytester.runpytest(*STRICT).assert_outcomes(passed=1)


def test_the_test_runs_on_the_io_loop_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio

        import pytest
        from tornado import ioloop

        @pytest.fixture
        def loop_seen_before_the_test(io_loop):
            # A fixture that runs before the loop does finds the test's loop.
            return asyncio.get_event_loop()

        @pytest.mark.gen_test
        async def test_loop(io_loop, loop_seen_before_the_test):
            assert ioloop.IOLoop.current() is io_loop
            assert asyncio.get_running_loop() is loop_seen_before_the_test

        @pytest.mark.gen_test
        async def test_without_naming_the_loop():
            await asyncio.sleep(0)
        """
    )
    pytester.runpytest(*STRICT).assert_outcomes(passed=2)


def test_gen_test_timeout_fails_a_slow_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNC_TEST_TIMEOUT", "0.2")
    pytester.makepyfile(
        """
        import asyncio

        import pytest

        @pytest.mark.gen_test(timeout=0.1)
        async def test_marked_timeout():
            await asyncio.sleep(30)

        @pytest.mark.gen_test
        async def test_environment_timeout():
            await asyncio.sleep(30)

        @pytest.mark.gen_test(timeout=5)
        async def test_in_time():
            await asyncio.sleep(0.3)
        """
    )
    result = pytester.runpytest("-p", "no:hypothesispytest")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*Operation timed out after 0.1 seconds*",
            "*Operation timed out after 0.2 seconds*",
        ],
        consecutive=False,
    )
    assert result.duration < 10


def test_a_task_left_running_is_cancelled_when_the_test_ends(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import asyncio

        import pytest

        EVENTS = []

        async def forever():
            try:
                await asyncio.sleep(30)
            finally:
                EVENTS.append("cancelled")

        @pytest.mark.gen_test
        async def test_leaves_a_task():
            asyncio.get_running_loop().create_task(forever())
            await asyncio.sleep(0)

        def test_it_was_cancelled():
            assert EVENTS == ["cancelled"]
        """
    )
    pytester.runpytest(*STRICT).assert_outcomes(passed=2)


def test_sprockets_app_runs_the_lifecycle_around_the_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from tornado import web

        from sprockets_http.app import Application

        EVENTS = []

        class Pool(web.RequestHandler):
            def get(self):
                self.write(self.settings["pool"])

        async def open_pool(application, io_loop):
            application.settings["pool"] = "open"
            EVENTS.append("before_run")

        def started(application, io_loop):
            EVENTS.append("on_start")

        def close_pool(application):
            EVENTS.append("shutdown")

        @pytest.fixture
        def app():
            application = Application([("/", Pool)])
            application.runner_callbacks["before_run"].append(open_pool)
            application.runner_callbacks["on_start"].append(started)
            application.runner_callbacks["shutdown"].append(close_pool)
            return application

        @pytest.mark.gen_test
        async def test_request(sprockets_app, http_client, base_url):
            assert EVENTS == ["before_run", "on_start"]
            response = await http_client.fetch(base_url + "/")
            assert response.body == b"open"

        def test_after():
            assert EVENTS == ["before_run", "on_start", "shutdown"]
        """
    )
    pytester.runpytest(*STRICT).assert_outcomes(passed=2)


THEIR_IO_LOOP = """
import pytest

@pytest.fixture
def io_loop():
    return "theirs"
"""


def test_pytest_tornado_loaded_provides_the_fixtures_instead(
    pytester: pytest.Pytester,
) -> None:
    # A stand-in with pytest-tornado's module name: loaded with -p, it is
    # registered under that name.  The real one is tried by the nox session
    # "example(pytest-tornado)".
    pytester.mkpydir("pytest_tornado")
    pytester.path.joinpath("pytest_tornado", "plugin.py").write_text(THEIR_IO_LOOP)
    pytester.makepyfile(
        """
        def test_whose(io_loop, request):
            assert io_loop == "theirs"
            manager = request.config.pluginmanager
            assert not manager.hasplugin("sprockets_http.tornado")
        """
    )
    pytester.syspathinsert()
    result = pytester.runpytest(*STRICT, "-p", "pytest_tornado.plugin")
    result.assert_outcomes(passed=1)
