"""Lifecycle extensions: registration, ordering, states, failures, discovery.

The lifecycle runs for real on an asyncio loop; only the service process and
its signals are left to the command-line tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado import httpclient, httpserver, ioloop, testing, web

from sprockets_http import app, extensions, health

Events = list[tuple[str, str]]


class Recorder(extensions.Extension):
    """An extension that records each hook call in ``events``."""

    def __init__(
        self,
        name: str,
        events: Events,
        *,
        needs: Iterable[str] = (),
        provides: Iterable[str] = (),
        first: bool = False,
        last: bool = False,
        version: str | None = None,
        fail: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.events = events
        self.needs = needs
        self.provides = provides
        self.first = first
        self.last = last
        self.version = version
        self.fail = set(fail)

    def _record(self, phase: str) -> None:
        self.events.append((phase, self.name))
        if phase in self.fail:
            raise RuntimeError(f"{self.name} {phase} broke")

    def before_run(self, app: object, io_loop: ioloop.IOLoop) -> None:
        self._record("before_run")

    async def on_start(self, app: object, io_loop: ioloop.IOLoop) -> None:
        # Recorded as it starts: on_start hooks start in order, and each
        # runs on its own, so they may finish in any order.
        self._record("on_start")
        await asyncio.sleep(0)

    async def shutdown(self, app: object) -> None:
        await asyncio.sleep(0)
        self._record("shutdown")


def run_lifecycle(
    application: app.CallbackManager,
    while_running: Callable[[], Awaitable[None]] | None = None,
) -> BaseException | None:
    """Start ``application``, then stop it; return what the start-up raised."""

    async def lifecycle() -> BaseException | None:
        io_loop = ioloop.IOLoop.current()
        try:
            await application.run_before_run(io_loop)
        except Exception as error:
            return error
        await application.run_on_start(io_loop)
        if while_running is not None:
            await while_running()
        await application.run_shutdown()
        return None

    return asyncio.run(lifecycle())


def names(events: Events, phase: str) -> list[str]:
    return [name for event_phase, name in events if event_phase == phase]


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


def test_order_first_needs_provides_last_and_reverse_shutdown() -> None:
    events: Events = []
    application = app.Application()
    for extension in (
        Recorder("metrics", events, last=True),
        Recorder("cache", events, needs=["database"]),
        Recorder("tracing", events, first=True),
        Recorder("pool", events, provides=["database"]),
        Recorder("plain", events),
        Recorder("client", events, needs=["pool"]),  # a name is a feature too
    ):
        application.add_extension(extension)
    application.before_run_callbacks.append(
        lambda app, io_loop: events.append(("before_run", "callback"))
    )
    application.on_start_callbacks.append(
        lambda app, io_loop: events.append(("on_start", "callback"))
    )
    application.on_shutdown_callbacks.append(
        lambda app: events.append(("shutdown", "callback"))
    )

    assert run_lifecycle(application) is None

    started = ["tracing", "pool", "cache", "plain", "client", "metrics"]
    assert names(events, "before_run") == [*started, "callback"]
    assert names(events, "on_start") == [*started, "callback"]
    assert names(events, "shutdown") == ["callback", *reversed(started)]


def test_a_need_wins_over_first_and_last() -> None:
    events: Events = []
    application = app.Application()
    application.add_extension(Recorder("early", events, first=True, needs=["db"]))
    application.add_extension(Recorder("late", events, last=True, provides=["db"]))

    assert run_lifecycle(application) is None

    assert names(events, "before_run") == ["late", "early"]


def test_states_and_versions_through_start_and_stop() -> None:
    seen: dict[str, dict[str, str]] = {}
    application = app.Application()

    def snapshot(moment: str) -> None:
        seen[moment] = {
            name: status.state for name, status in application.extensions.items()
        }

    class Watcher(extensions.Extension):
        def __init__(self, name: str, version: str | None = None) -> None:
            self.name = name
            self.version = version

        def before_run(self, app: object, io_loop: ioloop.IOLoop) -> None:
            snapshot(f"{self.name} before_run")

        async def on_start(self, app: object, io_loop: ioloop.IOLoop) -> None:
            snapshot(f"{self.name} on_start")

        def shutdown(self, app: object) -> None:
            snapshot(f"{self.name} shutdown")

    application.add_extension(Watcher("pool", "1.4.0"))
    application.add_extension(Watcher("cache"))
    snapshot("added")

    async def while_running() -> None:
        snapshot("running")

    assert run_lifecycle(application, while_running) is None
    snapshot("stopped")

    assert seen == {
        "added": {"pool": "registered", "cache": "registered"},
        "pool before_run": {"pool": "starting", "cache": "registered"},
        "cache before_run": {"pool": "starting", "cache": "starting"},
        "pool on_start": {"pool": "starting", "cache": "starting"},
        "cache on_start": {"pool": "running", "cache": "starting"},
        "running": {"pool": "running", "cache": "running"},
        "cache shutdown": {"pool": "running", "cache": "stopping"},
        "pool shutdown": {"pool": "stopping", "cache": "stopped"},
        "stopped": {"pool": "stopped", "cache": "stopped"},
    }
    assert application.extensions["pool"].version == "1.4.0"
    assert application.extensions["cache"].version is None


class Nameless:
    pass


class NamedNone:
    name = None


class BlankName:
    name = "  "


class KeepsDefaultName(extensions.Extension):
    pass


@pytest.mark.parametrize(
    "extension",
    [Nameless(), NamedNone(), BlankName(), KeepsDefaultName()],
    ids=["no name", "None", "blank", "default of the base class"],
)
def test_refuses_an_extension_without_a_name(extension: object) -> None:
    application = app.Application()

    with pytest.raises(extensions.ExtensionError, match="has no name"):
        application.add_extension(extension)

    assert dict(application.extensions) == {}


def test_refuses_a_second_extension_with_the_same_name() -> None:
    events: Events = []
    application = app.Application()
    application.add_extension(Recorder("pool", events, version="1"))

    with pytest.raises(extensions.ExtensionError, match="'pool' is already registered"):
        application.add_extension(Recorder("pool", events, version="2"))

    assert application.extensions["pool"].version == "1"


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"needs": "database"}, "needs must be an iterable of feature names"),
        ({"provides": [""]}, "provides holds '', which is not a feature name"),
        ({"first": True, "last": True}, "cannot be both first and last"),
        ({"on_start": "soon"}, "on_start is not callable"),
    ],
)
def test_refuses_a_malformed_declaration(
    declaration: dict[str, Any], message: str
) -> None:
    extension = type("Odd", (), {"name": "odd", **declaration})()

    with pytest.raises(extensions.ExtensionError, match=message):
        app.Application().add_extension(extension)


def test_an_unmet_need_fails_the_start_naming_feature_and_extension(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: Events = []
    application = app.Application()
    application.add_extension(Recorder("pool", events, provides=["database"]))
    application.add_extension(Recorder("cache", events, needs=["redis", "database"]))
    application.on_shutdown_callbacks.append(
        lambda app: events.append(("shutdown", "callback"))
    )

    failure = run_lifecycle(application)

    assert isinstance(failure, extensions.ExtensionError)
    assert "'cache' needs 'redis'" in str(failure)
    assert "registered: 'pool', 'cache'" in str(failure)
    assert events == [("shutdown", "callback")]
    assert {status.state for status in application.extensions.values()} == {
        "registered"
    }
    [record] = failure_records(caplog)
    assert "'cache' needs 'redis'" in str(record.exc_info[1])


def test_a_cycle_fails_the_start_naming_features_and_extensions() -> None:
    events: Events = []
    application = app.Application()
    application.add_extension(Recorder("standalone", events))
    application.add_extension(Recorder("a", events, needs=["x"], provides=["z"]))
    application.add_extension(Recorder("b", events, needs=["y"], provides=["x"]))
    application.add_extension(Recorder("c", events, needs=["z"], provides=["y"]))

    failure = run_lifecycle(application)

    assert str(failure) == (
        "extensions need each other in a cycle: 'a' needs 'x' provided by 'b'; "
        "'b' needs 'y' provided by 'c'; 'c' needs 'z' provided by 'a'"
    )
    assert events == []


def test_a_failing_before_run_hook_fails_the_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: Events = []
    application = app.Application()
    application.add_extension(Recorder("pool", events))
    application.add_extension(Recorder("cache", events, fail=["before_run"]))
    application.add_extension(Recorder("metrics", events))
    application.before_run_callbacks.append(
        lambda app, io_loop: events.append(("before_run", "callback"))
    )
    application.on_shutdown_callbacks.append(
        lambda app: events.append(("shutdown", "callback"))
    )

    failure = run_lifecycle(application)

    assert str(failure) == "cache before_run broke"
    assert events == [
        ("before_run", "pool"),
        ("before_run", "cache"),
        ("shutdown", "callback"),
        # the failed extension may release what it got; metrics never started
        ("shutdown", "cache"),
        ("shutdown", "pool"),
    ]
    assert {name: s.state for name, s in application.extensions.items()} == {
        "pool": "stopped",
        "cache": "failed",
        "metrics": "registered",
    }
    [record] = failure_records(caplog)
    assert "before_run extension 'cache'" in record.getMessage()


def test_failing_on_start_and_shutdown_hooks_never_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: Events = []
    application = app.Application()
    application.add_extension(Recorder("pool", events, fail=["on_start"]))
    application.add_extension(Recorder("cache", events, fail=["shutdown"]))
    application.add_extension(Recorder("metrics", events))

    assert run_lifecycle(application) is None

    assert names(events, "on_start") == ["pool", "cache", "metrics"]
    assert names(events, "shutdown") == ["metrics", "cache", "pool"]
    assert {name: s.state for name, s in application.extensions.items()} == {
        "pool": "failed",
        "cache": "failed",
        "metrics": "stopped",
    }
    messages = [record.getMessage() for record in failure_records(caplog)]
    assert messages == [
        "on_start step on_start extension 'pool' failed",
        "shutdown step shutdown extension 'cache' failed",
    ]
    assert "RuntimeError: cache shutdown broke" in caplog.text


def test_no_extension_can_be_added_once_started() -> None:
    application = app.Application()
    assert run_lifecycle(application) is None

    with pytest.raises(extensions.ExtensionError, match="has started"):
        application.add_extension(Recorder("late", []))


def test_a_plain_tornado_application_gets_extensions_when_wrapped() -> None:
    events: Events = []
    manager = app.wrap_application(web.Application())
    manager.add_extension(Recorder("pool", events))

    assert run_lifecycle(manager) is None

    assert events == [
        ("before_run", "pool"),
        ("on_start", "pool"),
        ("shutdown", "pool"),
    ]
    assert manager.extensions["pool"].state == "stopped"


PUBLISHED = """
INSTANCES = []


class Counter:
    name = "counter"

    def __init__(self):
        INSTANCES.append(self)
        self.calls = []

    def before_run(self, app, io_loop):
        self.calls.append("before_run")

    def shutdown(self, app):
        self.calls.append("shutdown")


class Versioned:
    name = "versioned"
    version = "9.9"


instance = Versioned()
"""


@pytest.fixture
def published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Install, for this test only, a distribution that publishes extensions.

    :returns: the name of its module
    """
    module = f"throwaway_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(PUBLISHED)
    dist_info = tmp_path / f"{module}-2.5.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module}\nVersion: 2.5.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{extensions.ENTRY_POINT_GROUP}]\n"
        f"throwaway-counter = {module}:Counter\n"
        f"throwaway-versioned = {module}:instance\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    sys.modules.pop(module, None)


def test_extensions_setting_loads_published_extensions(published: str) -> None:
    application = app.Application(
        extensions=["throwaway-versioned", "throwaway-counter"]
    )

    assert {name: s.as_dict() for name, s in application.extensions.items()} == {
        "versioned": {"version": "9.9", "state": "registered"},
        # a class is instantiated; without a version of its own, the
        # distribution's version is reported
        "counter": {"version": "2.5.0", "state": "registered"},
    }
    assert run_lifecycle(application) is None
    [counter] = sys.modules[published].INSTANCES
    assert counter.calls == ["before_run", "shutdown"]
    assert application.extensions["counter"].state == "stopped"


def test_an_unknown_extension_name_lists_those_available(published: str) -> None:
    with pytest.raises(extensions.ExtensionError) as raised:
        app.Application(extensions=["throwaway-counter", "throwaway-missing"])

    message = str(raised.value)
    assert "named 'throwaway-missing'" in message
    assert "'throwaway-counter'" in message
    assert "'throwaway-versioned'" in message


def test_the_extensions_setting_must_be_a_list() -> None:
    with pytest.raises(extensions.ExtensionError, match="must be a list of names"):
        app.Application(extensions="throwaway-counter")


def fetch_status(application: web.Application) -> httpclient.HTTPResponse:
    """GET /status from ``application`` served on 127.0.0.1."""

    async def fetch() -> httpclient.HTTPResponse:
        sock, port = testing.bind_unused_port()
        server = httpserver.HTTPServer(application)
        server.add_sockets([sock])
        client = httpclient.AsyncHTTPClient(force_instance=True)
        try:
            return await client.fetch(
                f"http://127.0.0.1:{port}/status", raise_error=False
            )
        finally:
            client.close()
            server.stop()
            await server.close_all_connections()

    return asyncio.run(fetch())


def test_status_handler_reports_the_registry_as_json() -> None:
    application = app.Application([("/status", health.StatusHandler)])
    application.add_extension(Recorder("pool", [], version="1.4.0"))
    application.add_extension(Recorder("cache", [], fail=["before_run"]))
    assert run_lifecycle(application) is not None

    response = fetch_status(application)

    assert response.code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert json.loads(response.body) == {
        "extensions": {
            "pool": {"version": "1.4.0", "state": "stopped"},
            "cache": {"version": None, "state": "failed"},
        }
    }


def test_status_handler_in_a_plain_tornado_application_answers_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = fetch_status(web.Application([("/status", health.StatusHandler)]))

    assert response.code == 500
    assert "not a sprockets_http.app.Application" in caplog.text
