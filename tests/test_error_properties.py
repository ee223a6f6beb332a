"""Properties of error responses under random failures and ``Accept`` headers.

Each example plants a fresh secret in the exception text and the log message,
makes a handler fail one way or another, and checks the response over real
HTTP: the intended status, a body that parses as its Content-Type says, a
status line without line breaks, and the secret nowhere in the response
unless the service runs with ``serve_traceback`` on.
"""

from __future__ import annotations

import http.client
import sys
import uuid
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from tornado import httpclient, web

from sprockets_http import mixins
from tests.apps.error_apps import (
    PROBLEM_PATHS,
    WRITER_PATHS,
    Action,
    ErrorServiceCase,
    Unprintable,
    decode,
)

EXAMPLES = settings(max_examples=150, deadline=None)

KINDS = (
    "http_error",
    "detailed_error",
    "exception",
    "unprintable",
    "send_error",
    "send_error_with_exception",
)
EXCEPTIONS = (KeyError, ValueError, RuntimeError, OSError, LookupError, Exception)

header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
)
media_types = st.sampled_from(
    [
        "application/json",
        "application/msgpack",
        "application/problem+json",
        "text/html",
        "*/*",
        "application/*",
        "*/*;q=0",
        "application/json;q=0",
        "application/msgpack;q=0.5",
        "",
        ";",
        "q=1",
    ]
)
accepts = st.one_of(
    st.none(),
    header_text,
    st.lists(media_types, max_size=4).map(", ".join),
)


@dataclass
class Scenario:
    kind: str
    status: int
    reason: str | None
    exception_type: type[Exception]
    text: str

    def action(self, secret: str) -> Action:
        def act(handler: web.RequestHandler) -> None:
            if self.kind == "http_error":
                raise web.HTTPError(self.status, "%s", secret, reason=self.reason)
            if self.kind == "detailed_error":
                raise mixins.DetailedHTTPError(
                    self.status, self.text, reason=self.reason, log_message=secret
                )
            if self.kind == "exception":
                raise self.exception_type(self.text + secret)
            if self.kind == "unprintable":
                raise Unprintable(secret)
            if self.kind == "send_error":
                handler.send_error(self.status, reason=self.reason, log_message=secret)
                return
            try:
                raise self.exception_type(secret)
            except Exception:
                handler.send_error(
                    self.status, reason=self.reason, exc_info=sys.exc_info()
                )

        return act

    @property
    def intended_status(self) -> int:
        return 500 if self.kind in ("exception", "unprintable") else self.status

    @property
    def secret_may_show(self) -> bool:
        """Whether a service in debug mode may show the secret.

        A traceback names the exception with its text, an HTTPError's log
        message included; only ``send_error`` without one keeps it hidden.
        """
        return self.kind != "send_error"


scenarios = st.builds(
    Scenario,
    kind=st.sampled_from(KINDS),
    status=st.integers(400, 599),
    reason=st.none() | st.text(max_size=30),
    exception_type=st.sampled_from(EXCEPTIONS),
    text=st.text(max_size=30),
)
paths = st.sampled_from(WRITER_PATHS + PROBLEM_PATHS)


class ErrorPropertyCase(ErrorServiceCase):
    def check(
        self, scenario: Scenario, path: str, accept: str | None
    ) -> tuple[httpclient.HTTPResponse, str, object]:
        secret = f"SECRET-{uuid.uuid4().hex}"
        headers = {} if accept is None else {"Accept": accept}
        response = self.request(path, scenario.action(secret), headers)
        status = scenario.intended_status
        self.assertEqual(response.code, status)
        self.assertNotRegex(response.reason, "[\r\n]")
        if response.reason != http.client.responses.get(status, "Unknown"):
            # Only the reason as given may replace the standard phrase.
            self.assertIsNotNone(scenario.reason)
        document = decode(response)
        self.assertIsInstance(document, dict)
        if path in PROBLEM_PATHS:
            self.assertEqual(document["status"], status)
            self.assertIsInstance(document["type"], str)
            self.assertIsInstance(document["title"], str)
        else:
            self.assertLessEqual({"type", "message", "traceback"}, document.keys())
            self.assertIsInstance(document["message"], str)
        return response, secret, document


class ProductionProperties(ErrorPropertyCase):
    @EXAMPLES
    @given(scenario=scenarios, path=paths, accept=accepts)
    def test_responses_keep_the_status_parse_and_keep_secrets(
        self, scenario: Scenario, path: str, accept: str | None
    ) -> None:
        response, secret, document = self.check(scenario, path, accept)
        self.assertNotIn(secret.encode(), response.body)
        self.assertNotIn(secret, str(response.headers))
        self.assertNotIn(secret, response.reason)
        if path in WRITER_PATHS:
            self.assertIsNone(document["traceback"])  # type: ignore[index]


class DebugProperties(ErrorPropertyCase):
    serve_traceback = True

    @EXAMPLES
    @given(scenario=scenarios, path=paths, accept=accepts)
    def test_responses_keep_the_status_and_parse(
        self, scenario: Scenario, path: str, accept: str | None
    ) -> None:
        response, secret, _ = self.check(scenario, path, accept)
        if not scenario.secret_may_show:
            self.assertNotIn(secret.encode(), response.body)
