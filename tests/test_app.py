"""The Application: callbacks, access log and Server header, over real HTTP."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import unittest
from typing import Any, ClassVar

import pytest
from tornado import ioloop, testing, web

from sprockets_http import app, drain
from sprockets_http.testing import SprocketsHttpTestCase

QUOTED = r'(?:[^"\\]|\\.)*'  # a quoted field with backslash escapes
ACCESS_LINE = re.compile(
    r"^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "
    r'"(?P<method>\S+) (?P<uri>\S+) HTTP/1\.1" (?P<status>\d{3}) "(?P<reason>[^"]*)" '
    rf'(?P<bytes>\d+|-) "(?P<referer>{QUOTED})" "(?P<agent>{QUOTED})" '
    r"\(secs:\d+\.\d{3}\)$"
)


class Hello(web.RequestHandler):
    def get(self) -> None:
        self.write("hello")


class Quiet(web.RequestHandler):
    access_log_failures_only = True

    def get(self) -> None:
        if self.get_argument("fail", None):
            raise web.HTTPError(409)
        self.write("ok")


class Status(web.RequestHandler):
    def get(self, code: str) -> None:
        self.set_status(int(code))
        self.finish()


class OwnServer(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Server", "handmade")
        self.write("mine")


HANDLERS: list[Any] = [
    ("/", Hello),
    ("/quiet", Quiet),
    (r"/status/(\d+)", Status),
    ("/own-server", OwnServer),
]


class AccessLogTests(testing.AsyncHTTPTestCase):
    def get_app(self) -> web.Application:
        return app.Application(HANDLERS)

    def access_records(self, path: str, **kwargs: Any) -> list[logging.LogRecord]:
        with self.assertLogs("tornado.access", logging.DEBUG) as logs:
            self.fetch(path, **kwargs)
        return logs.records

    def test_success_line_format_and_level(self) -> None:
        (record,) = self.access_records(
            "/?x=1", headers={"Referer": "http://ref/", "User-Agent": "tests/1"}
        )
        assert record.levelno == logging.INFO
        match = ACCESS_LINE.match(record.getMessage())
        assert match, record.getMessage()
        assert match.group("method", "uri", "status", "reason", "bytes") == (
            "GET",
            "/",
            "200",
            "OK",
            "5",
        )
        assert match.group("referer", "agent") == ("http://ref/", "tests/1")

    def test_the_query_string_appears_nowhere_in_the_record(self) -> None:
        (record,) = self.access_records("/?token=s3cret")
        assert "s3cret" not in record.getMessage()
        assert "s3cret" not in repr(vars(record))
        assert record.path == "/"  # type: ignore[attr-defined]

    def test_levels_follow_the_status(self) -> None:
        for status, level in [
            (302, logging.INFO),
            (404, logging.WARNING),
            (503, logging.ERROR),
        ]:
            records = self.access_records(f"/status/{status}", follow_redirects=False)
            assert [r.levelno for r in records] == [level], status

    def test_failures_only_handlers_log_successes_at_debug(self) -> None:
        assert [r.levelno for r in self.access_records("/quiet")] == [logging.DEBUG]
        assert [r.levelno for r in self.access_records("/quiet?fail=1")] == [
            logging.WARNING
        ]

    def test_client_text_cannot_forge_a_log_line(self) -> None:
        # Tornado refuses C0 controls in header values, but C1 controls
        # such as NEL (a line break to some log shippers) and CSI (a
        # terminal escape) get through.
        (record,) = self.access_records(
            "/", headers={"User-Agent": 'evil" \x85INFO fake\x9b31m line'}
        )
        message = record.getMessage()
        assert len(message.splitlines()) == 1
        assert not any(0x80 <= ord(c) < 0xA0 for c in message)
        assert ACCESS_LINE.match(message), message
        assert '"evil\\" \\x85INFO fake\\x9b31m line"' in message


class QueryLoggedTests(AccessLogTests):
    def get_app(self) -> web.Application:
        return app.Application(HANDLERS, access_log_query=True)

    def test_success_line_format_and_level(self) -> None:
        (record,) = self.access_records("/?x=1")
        match = ACCESS_LINE.match(record.getMessage())
        assert match and match.group("uri") == "/?x=1", record.getMessage()
        assert (record.path, record.query) == ("/", "x=1")  # type: ignore[attr-defined]

    def test_the_query_string_appears_nowhere_in_the_record(self) -> None:
        pass  # logged on purpose here


class ServerHeaderTests(testing.AsyncHTTPTestCase):
    settings: ClassVar[dict[str, Any]] = {}
    expected: ClassVar[str | None] = None

    def get_app(self) -> web.Application:
        return app.Application(HANDLERS, **self.settings)

    def test_server_header(self) -> None:
        assert self.fetch("/").headers.get("Server") == self.expected

    def test_a_handler_that_sets_the_header_keeps_it(self) -> None:
        assert self.fetch("/own-server").headers.get("Server") == "handmade"


class ServiceVersionHeaderTests(ServerHeaderTests):
    settings: ClassVar[dict[str, Any]] = {"service": "orders", "version": "4.2.0"}
    expected = "orders/4.2.0"


class ServiceHeaderTests(ServerHeaderTests):
    settings: ClassVar[dict[str, Any]] = {"service": "orders"}
    expected = "orders"


class ExplicitHeaderTests(ServerHeaderTests):
    settings: ClassVar[dict[str, Any]] = {
        "service": "orders",
        "version": "1",
        "server_header": "edge",
    }
    expected = "edge"


class RemovedHeaderTests(ServerHeaderTests):
    settings: ClassVar[dict[str, Any]] = {"service": "orders", "server_header": None}
    expected = None


def test_callback_properties_and_wrap_application() -> None:
    plain = web.Application()
    first, second = (lambda *a: None), (lambda *a: None)
    wrapped = app.wrap_application(plain, before_run=first, shutdown=[first, second])
    assert wrapped.tornado_application is plain
    assert wrapped.settings is plain.settings
    assert wrapped.before_run_callbacks == [first]
    assert wrapped.on_start_callbacks == []
    assert wrapped.on_shutdown_callbacks == [first, second]

    lifecycle_app = app.Application()
    assert app.wrap_application(lifecycle_app, on_start=second) is lifecycle_app
    assert lifecycle_app.tornado_application is lifecycle_app
    assert lifecycle_app.on_start_callbacks == [second]


def test_start_reraises_a_before_run_failure_after_running_shutdown() -> None:
    calls: list[str] = []

    def fails(application: Any, io_loop: Any) -> None:
        calls.append("before_run")
        raise LookupError("no database")

    def never(application: Any, io_loop: Any) -> None:
        calls.append("never")

    async def cleanup(application: Any) -> None:
        await asyncio.sleep(0)
        calls.append("shutdown")

    application = app.Application()
    application.runner_callbacks["before_run"] += [fails, never]
    application.runner_callbacks["shutdown"].append(cleanup)
    io_loop = ioloop.IOLoop(make_current=False)
    try:
        with pytest.raises(LookupError, match="no database"):
            application.start(io_loop)
    finally:
        io_loop.close()
    assert calls == ["before_run", "shutdown"]


def test_stop_runs_shutdown_then_stops_the_loop() -> None:
    calls: list[str] = []

    async def cleanup(application: Any) -> None:
        await asyncio.sleep(0.01)
        calls.append("shutdown")

    application = app.Application()
    application.runner_callbacks["shutdown"].append(cleanup)
    io_loop = ioloop.IOLoop(make_current=False)
    try:
        application.stop(io_loop, shutdown_limit=1.0, wait_timeout=0.1)
        io_loop.start()  # returns once stop() has stopped it
    finally:
        io_loop.close()
    assert calls == ["shutdown"]


def test_stop_without_a_runner_sets_the_drain_notice_and_runs_drain_callbacks() -> None:
    calls: list[tuple[str, bool]] = []

    def record(phase: str) -> Any:
        return lambda application: calls.append(
            (phase, drain.notice(application).is_set())
        )

    application = app.Application()
    application.on_shutdown_callbacks.append(record("shutdown"))
    application.on_drain_callbacks.append(record("drain"))
    assert app.PHASES.index("drain") < app.PHASES.index("shutdown")
    io_loop = ioloop.IOLoop(make_current=False)
    try:
        application.stop(io_loop, shutdown_limit=1.0, wait_timeout=0.1)
        io_loop.start()
    finally:
        io_loop.close()
    assert calls == [("drain", True), ("shutdown", True)]
    assert drain.notice(application).close_code == 1001


def test_a_hanging_shutdown_callback_is_cut_off_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    async def hangs(application: Any) -> None:
        await asyncio.Event().wait()

    def after(application: Any) -> None:
        calls.append("after")

    application = app.Application()
    application.runner_callbacks["shutdown"] += [hangs, after]
    asyncio.run(application.run_shutdown(shutdown_limit=0.05))
    assert calls == ["after"]
    assert "did not finish within 0.1 seconds" in caplog.text


EVENTS: list[str] = []


class LifecycleCase(SprocketsHttpTestCase):
    def get_app(self) -> web.Application:
        application = app.Application(HANDLERS)

        async def before_run(application: Any, io_loop: Any) -> None:
            await asyncio.sleep(0)
            EVENTS.append("before_run")

        async def shutdown(application: Any) -> None:
            await asyncio.sleep(0)
            EVENTS.append("shutdown")

        application.runner_callbacks["before_run"].append(before_run)
        application.runner_callbacks["on_start"].append(
            lambda application, io_loop: EVENTS.append("on_start")
        )
        application.runner_callbacks["shutdown"].append(shutdown)
        return application

    def test_request(self) -> None:
        EVENTS.append("test")
        assert self.fetch("/").body == b"hello"


def test_sprockets_http_test_case_runs_the_whole_lifecycle() -> None:
    EVENTS.clear()
    result = unittest.TextTestRunner(stream=io.StringIO()).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(LifecycleCase)
    )
    assert result.wasSuccessful(), result.errors + result.failures
    # As with sprockets.http, on_start callbacks start once the loop runs:
    # here, when the test makes its request.
    assert EVENTS == ["before_run", "test", "on_start", "shutdown"]


@pytest.mark.parametrize(("limit", "finished"), [(0.05, False), (2.0, True)])
def test_a_failed_start_gives_shutdown_callbacks_the_shutdown_limit(
    caplog: pytest.LogCaptureFixture, limit: float, finished: bool
) -> None:
    calls: list[str] = []

    def fails(application: Any, io_loop: Any) -> None:
        raise LookupError("no database")

    async def slow_cleanup(application: Any) -> None:
        await asyncio.sleep(0.2)
        calls.append("cleaned up")

    application = app.Application()
    application.runner_callbacks["before_run"].append(fails)
    application.runner_callbacks["shutdown"].append(slow_cleanup)

    async def start() -> None:
        await application.run_before_run(ioloop.IOLoop.current(), limit)

    with pytest.raises(LookupError):
        asyncio.run(start())
    assert calls == (["cleaned up"] if finished else [])
    assert ("did not finish within" in caplog.text) is not finished


class ChangingServerHeaderTests(testing.AsyncHTTPTestCase):
    def get_app(self) -> web.Application:
        return app.Application(HANDLERS, service="orders", version="1")

    def test_the_header_follows_the_setting(self) -> None:
        application: Any = self._app
        assert application.settings["server_header"] == "orders/1"
        assert self.fetch("/").headers.get("Server") == "orders/1"
        application.settings["server_header"] = "orders/2"
        assert self.fetch("/").headers.get("Server") == "orders/2"
        application.settings["server_header"] = None
        assert "Server" not in self.fetch("/").headers


def test_no_service_setting_means_no_server_header_setting_value() -> None:
    assert app.Application().settings["server_header"] is None


def test_application_accepts_runner_callbacks_and_keeps_the_dict() -> None:
    def before_run(application: Any, io_loop: Any) -> None:
        pass

    given: dict[str, list[Any]] = {"before_run": [before_run]}
    application = app.Application(runner_callbacks=given)
    assert application.before_run_callbacks == [before_run]
    assert application.on_shutdown_callbacks == []
    assert application.runner_callbacks is given  # later appends still count


def test_a_plain_application_keeps_or_gets_runner_callbacks() -> None:
    def on_start(application: Any, io_loop: Any) -> None:
        pass

    with_callbacks: Any = web.Application()
    with_callbacks.runner_callbacks = {"on_start": [on_start]}
    assert app.wrap_application(with_callbacks).on_start_callbacks == [on_start]

    without: Any = web.Application()
    wrapped = app.wrap_application(without)
    assert without.runner_callbacks is wrapped.runner_callbacks
    without.runner_callbacks["shutdown"].append(print)
    assert wrapped.on_shutdown_callbacks == [print]


STARTS: list[str] = []


class SeedingApplication(app.Application):
    """Overrides start and stop, as test suites do to seed and check data."""

    def start(self, io_loop: Any, shutdown_limit: float = 5.0) -> None:
        STARTS.append("seeded")
        super().start(io_loop, shutdown_limit)

    def stop(self, io_loop: Any, *args: Any) -> None:
        STARTS.append(f"stopped with {args}")
        super().stop(io_loop, *args)


class OverridingCase(SprocketsHttpTestCase):
    shutdown_limit = 0.5

    def get_app(self) -> web.Application:
        self.app = SeedingApplication(HANDLERS)
        return self.app

    def test_request(self) -> None:
        assert self.fetch("/").body == b"hello"


def test_the_test_case_calls_the_applications_own_start_and_stop() -> None:
    STARTS.clear()
    result = unittest.TextTestRunner(stream=io.StringIO()).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(OverridingCase)
    )
    assert result.wasSuccessful(), result.errors + result.failures
    assert STARTS == ["seeded", "stopped with (0.5, 0.05)"]
