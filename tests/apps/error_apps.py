"""A service whose handlers fail on request, for the error mixin tests.

Every handler runs the test's *action* (a function taking the handler) in
``get``: it may raise, call ``send_error`` or write.  The handlers combine the
mixins the way services do:

``/writer``, ``/problem``
    :class:`~sprockets_http.mixins.ErrorLogger` with
    :class:`~sprockets_http.mixins.ErrorWriter` or
    :class:`~sprockets_http.mixins.ProblemDetailsWriter`
``/writer/content``, ``/problem/content``
    the same with ``sprockets.mixins.mediatype``'s ``ContentMixin``, JSON and
    msgpack transcoders and no default content type, so an unsatisfiable
    ``Accept`` makes negotiation fail; only with the ``[mediatype]`` extra
    installed
``/logger``
    :class:`~sprockets_http.mixins.ErrorLogger` and Tornado's own error page
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tornado import httpclient, testing, web

from sprockets_http import app, mixins

try:
    import umsgpack
    from sprockets.mixins.mediatype import content, transcoders
except ImportError:  # without the [mediatype] extra
    HAS_MEDIATYPE = False
else:
    HAS_MEDIATYPE = True

Action = Callable[[web.RequestHandler], None]


class Scripted(web.RequestHandler):
    def get(self) -> None:
        self.settings["run_action"](self)


class Writer(mixins.ErrorLogger, mixins.ErrorWriter, Scripted):
    pass


class Problem(mixins.ErrorLogger, mixins.ProblemDetailsWriter, Scripted):
    pass


class LoggerOnly(mixins.ErrorLogger, Scripted):
    pass


ROUTES: list[tuple[str, type[web.RequestHandler]]] = [
    ("/writer", Writer),
    ("/problem", Problem),
    ("/logger", LoggerOnly),
]

if HAS_MEDIATYPE:

    class ContentWriter(
        content.ContentMixin, mixins.ErrorLogger, mixins.ErrorWriter, Scripted
    ):
        pass

    class ContentProblem(
        content.ContentMixin, mixins.ErrorLogger, mixins.ProblemDetailsWriter, Scripted
    ):
        pass

    ROUTES += [("/writer/content", ContentWriter), ("/problem/content", ContentProblem)]

WRITER_PATHS = tuple(path for path, _ in ROUTES if path.startswith("/writer"))
PROBLEM_PATHS = tuple(path for path, _ in ROUTES if path.startswith("/problem"))


def make_app(
    run_action: Action, serve_traceback: bool = False, transcode: bool = True
) -> app.Application:
    application = app.Application(
        ROUTES,
        run_action=run_action,
        serve_traceback=serve_traceback,
    )
    if transcode and HAS_MEDIATYPE:
        content.add_transcoder(application, transcoders.JSONTranscoder())
        content.add_transcoder(application, transcoders.MsgPackTranscoder())
    return application


def raising(error: BaseException) -> Action:
    """An action that raises ``error``."""

    def action(handler: web.RequestHandler) -> None:
        raise error

    return action


def sending(status: int, **kwargs: Any) -> Action:
    """An action that calls ``send_error(status, **kwargs)``."""

    def action(handler: web.RequestHandler) -> None:
        handler.send_error(status, **kwargs)

    return action


class Unprintable(Exception):
    """An exception whose text cannot be rendered."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def decode(response: httpclient.HTTPResponse) -> Any:
    """The body decoded as its Content-Type says; fails for anything else.

    An error document's ``request_id`` member must be the id of the
    ``X-Request-Id`` response header; it is checked and left out.
    """
    media_type = response.headers["Content-Type"].split(";")[0].strip()
    if media_type in ("application/json", "application/problem+json"):
        document = json.loads(response.body)
    elif media_type in ("application/msgpack", "application/problem+msgpack"):
        document = umsgpack.unpackb(response.body)
    else:
        raise AssertionError(f"unexpected Content-Type {media_type!r}")
    if isinstance(document, dict) and "request_id" in document:
        assert document.pop("request_id") == response.headers["X-Request-Id"]
    return document


class ErrorServiceCase(testing.AsyncHTTPTestCase):
    """Serves :func:`make_app` on 127.0.0.1; :meth:`request` runs an action."""

    serve_traceback = False
    transcode = True

    def get_app(self) -> web.Application:
        return make_app(self._run_action, self.serve_traceback, self.transcode)

    def _run_action(self, handler: web.RequestHandler) -> None:
        self.action(handler)

    @pytest.fixture(autouse=True)
    def _caplog(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def request(
        self, path: str, action: Action, headers: dict[str, str] | None = None
    ) -> httpclient.HTTPResponse:
        self.action = action
        return self.fetch(path, headers=headers, raise_error=False)
