"""The handler mixins with ``sprockets.mixins.mediatype`` (the ``[mediatype]``
extra), through real HTTP requests: skipped when it is not installed."""

from __future__ import annotations

import itertools
import json

import pytest

pytest.importorskip(
    "sprockets.mixins.mediatype", reason="needs the [mediatype] extra installed"
)

import umsgpack
from sprockets.mixins.mediatype import content
from tornado import web

from sprockets_http import mixins
from tests.apps.error_apps import ErrorServiceCase, decode, raising

SECRET = "s3cr3t-db-host.internal"


class NegotiationTests(ErrorServiceCase):
    def test_msgpack_when_accepted(self) -> None:
        response = self.request(
            "/writer/content",
            raising(web.HTTPError(404)),
            {"Accept": "application/msgpack"},
        )
        self.assertEqual(response.code, 404)
        self.assertEqual(response.headers["Content-Type"], "application/msgpack")
        self.assertEqual(response.headers["Vary"], "Accept")
        self.assertEqual(
            decode(response),
            {"type": "HTTPError", "message": "Not Found", "traceback": None},
        )

    def test_json_through_the_content_mixin(self) -> None:
        response = self.request("/writer/content", raising(KeyError(SECRET)))
        self.assertEqual(
            response.headers["Content-Type"], 'application/json; charset="utf-8"'
        )
        self.assertEqual(decode(response)["message"], "Internal Server Error")

    def test_a_malformed_or_unsatisfiable_accept_falls_back_to_json(self) -> None:
        for accept in (",,,", "*/*;q=x", "text/html", "application/"):
            for path in ("/writer/content", "/problem/content"):
                with self.subTest(accept=accept, path=path):
                    response = self.request(
                        path, raising(web.HTTPError(410)), {"Accept": accept}
                    )
                    self.assertEqual(response.code, 410)
                    self.assertIn(
                        response.headers["Content-Type"],
                        ("application/json; charset=UTF-8", "application/problem+json"),
                    )
                    self.assertIn("Gone", json.loads(response.body).values())


class NoTranscoderTests(ErrorServiceCase):
    transcode = False

    def test_json_without_transcoders(self) -> None:
        for path, content_type in (
            ("/writer/content", "application/json; charset=UTF-8"),
            ("/problem/content", "application/problem+json"),
        ):
            with self.subTest(path=path):
                response = self.request(
                    path, raising(web.HTTPError(429)), {"Accept": "application/msgpack"}
                )
                self.assertEqual(response.code, 429)
                self.assertEqual(response.headers["Content-Type"], content_type)
                self.assertIn("Too Many Requests", json.loads(response.body).values())


class ProblemDetailsContentTests(ErrorServiceCase):
    def test_msgpack_when_accepted(self) -> None:
        response = self.request(
            "/problem/content",
            raising(web.HTTPError(404)),
            {"Accept": "application/msgpack"},
        )
        self.assertEqual(
            response.headers["Content-Type"], "application/problem+msgpack"
        )
        self.assertEqual(umsgpack.unpackb(response.body)["title"], "Not Found")

    def test_json_through_the_content_mixin(self) -> None:
        response = self.request(
            "/problem/content",
            raising(web.HTTPError(404)),
            {"Accept": "application/json"},
        )
        self.assertEqual(response.headers["Content-Type"], "application/problem+json")
        self.assertEqual(decode(response)["status"], 404)


MIXINS: dict[str, type] = {
    "logger": mixins.ErrorLogger,
    "writer": mixins.ErrorWriter,
    "content": content.ContentMixin,
}


@pytest.mark.parametrize("order", list(itertools.permutations(MIXINS)))
def test_the_mixins_combine_in_any_order(order: tuple[str, ...]) -> None:
    bases = (*(MIXINS[name] for name in order), web.RequestHandler)
    handler = type("Handler", bases, {})
    assert issubclass(handler, web.RequestHandler)
    # Whatever the order, the error document is still ErrorWriter's.
    assert handler.write_error is mixins.ErrorWriter.write_error
