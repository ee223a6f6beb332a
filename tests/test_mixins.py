"""The handler mixins, through real HTTP requests to the application."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import pytest
from tornado import iostream, web

from sprockets_http import mixins
from tests.apps.error_apps import (
    ErrorServiceCase,
    Unprintable,
    decode,
    raising,
    sending,
)

SECRET = "s3cr3t-db-host.internal"


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The ErrorLogger lines captured so far."""
    return [r for r in caplog.records if " failed with " in r.getMessage()]


def traceback_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info]


class Greeter(mixins.LoggingHandler, web.RequestHandler):
    # initialize() without super(): the logger must not depend on it.
    def initialize(self) -> None:
        pass

    def get(self) -> None:
        self.logger.warning("hello from %s", self.logger.name)
        self.write("hi")


class LoggingHandlerTests(ErrorServiceCase):
    def get_app(self) -> web.Application:
        return web.Application([("/", Greeter)])

    def test_logger_is_named_after_the_class(self) -> None:
        response = self.fetch("/")
        self.assertEqual(response.code, 200)
        [record] = [r for r in self.caplog.records if r.msg.startswith("hello")]
        self.assertEqual(record.name, "Greeter")

    def test_a_logger_set_by_a_base_class_is_kept(self) -> None:
        custom = logging.getLogger("custom.name")

        class Custom(mixins.LoggingHandler, web.RequestHandler):
            logger = custom

        class Child(Custom):
            pass

        class Plain(mixins.LoggingHandler, web.RequestHandler):
            pass

        self.assertIs(Custom.logger, custom)
        self.assertIs(Child.logger, custom)
        self.assertEqual(Plain.logger.name, "Plain")


class ErrorLoggerTests(ErrorServiceCase):
    def assert_logged(self, level: int, line: str) -> logging.LogRecord:
        [record] = failure_records(self.caplog)
        self.assertEqual(record.getMessage(), line)
        self.assertEqual(record.levelno, level)
        return record

    def test_http_error_is_a_warning_with_the_standard_phrase(self) -> None:
        self.request("/writer", raising(web.HTTPError(404)))
        record = self.assert_logged(
            logging.WARNING, "GET /writer failed with 404: Not Found"
        )
        self.assertEqual(record.name, "Writer")
        self.assertIsNone(record.exc_info)

    def test_the_reason_of_an_http_error(self) -> None:
        self.request("/writer", raising(web.HTTPError(418, reason="Too hot")))
        self.assert_logged(logging.WARNING, "GET /writer failed with 418: Too hot")

    def test_the_log_message_of_an_http_error(self) -> None:
        error = web.HTTPError(400, "no row %s in %s", 42, SECRET, reason="Gone")
        self.request("/writer", raising(error))
        self.assert_logged(
            logging.WARNING, f"GET /writer failed with 400: no row 42 in {SECRET}"
        )

    def test_a_log_message_with_percent_and_no_arguments(self) -> None:
        self.request("/writer", raising(web.HTTPError(400, "100% wrong")))
        self.assert_logged(logging.WARNING, "GET /writer failed with 400: 100% wrong")

    def test_the_log_message_given_to_send_error(self) -> None:
        self.request("/writer", sending(503, reason="Later", log_message="pool empty"))
        self.assert_logged(logging.ERROR, "GET /writer failed with 503: pool empty")

    def test_the_reason_given_to_send_error(self) -> None:
        self.request("/logger", sending(502, reason="Upstream said no"))
        self.assert_logged(
            logging.ERROR, "GET /logger failed with 502: Upstream said no"
        )

    def test_a_non_standard_status_is_unknown(self) -> None:
        self.request("/writer", raising(web.HTTPError(599)))
        self.assert_logged(logging.ERROR, "GET /writer failed with 599: Unknown")

    def test_an_exception_is_logged_once_with_its_traceback(self) -> None:
        response = self.request("/writer", raising(KeyError(SECRET)))
        self.assertEqual(response.code, 500)
        record = self.assert_logged(
            logging.ERROR, "GET /writer failed with 500: Internal Server Error"
        )
        self.assertEqual(traceback_records(self.caplog), [record])
        assert record.exc_info is not None
        self.assertIsInstance(record.exc_info[1], KeyError)

    def test_a_plain_5xx_http_error_has_no_traceback(self) -> None:
        self.request("/writer", raising(web.HTTPError(503)))
        self.assertEqual(len(failure_records(self.caplog)), 1)
        self.assertEqual(traceback_records(self.caplog), [])

    def test_a_5xx_http_error_raised_from_an_exception_has_its_traceback(self) -> None:
        def action(handler: web.RequestHandler) -> None:
            try:
                {}["missing"]
            except KeyError as error:
                raise web.HTTPError(503) from error

        self.request("/writer", action)
        record = self.assert_logged(
            logging.ERROR, "GET /writer failed with 503: Service Unavailable"
        )
        self.assertEqual(traceback_records(self.caplog), [record])

    def test_an_exception_after_the_response_is_logged_once(self) -> None:
        def action(handler: web.RequestHandler) -> None:
            handler.finish("done")
            raise RuntimeError(SECRET)

        response = self.request("/writer", action)
        self.assertEqual((response.code, response.body), (200, b"done"))
        [record] = traceback_records(self.caplog)
        self.assertEqual(
            record.getMessage(), "GET /writer failed after its response was finished"
        )
        self.assertEqual(record.levelno, logging.ERROR)

    def test_an_exception_after_flushing_is_logged_once(self) -> None:
        def action(handler: web.RequestHandler) -> None:
            handler.write("partial")
            handler.flush()
            raise RuntimeError(SECRET)

        self.request("/writer", action)
        [record] = traceback_records(self.caplog)
        self.assertEqual(
            record.getMessage(), "GET /writer failed with 500: Internal Server Error"
        )

    def test_control_characters_from_the_request_are_escaped(self) -> None:
        def action(handler: web.RequestHandler) -> None:
            raise web.HTTPError(404, "no widget %s", handler.get_argument("id"))

        self.request("/writer?id=7%0D%0AINFO%20forged", action)
        self.assert_logged(
            logging.WARNING,
            "GET /writer?id=7%0D%0AINFO%20forged failed with 404: "
            "no widget 7\\x0d\\x0aINFO forged",
        )

    def test_a_raw_line_break_in_the_uri_is_escaped(self) -> None:
        # Tornado refuses C0 controls in the request line, not NEL (U+0085),
        # which str.splitlines() and many log viewers treat as a line break.
        self.action = raising(web.HTTPError(404))

        async def exchange() -> bytes:
            stream = iostream.IOStream(socket.socket())
            await stream.connect(("127.0.0.1", self.get_http_port()))
            await stream.write(b"GET /writer?\x85forged HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await stream.read_until(b"\r\n")
            stream.close()
            return head

        head = self.io_loop.run_sync(exchange, timeout=10)
        self.assertEqual(head, b"HTTP/1.1 404 Not Found\r\n")
        self.assert_logged(
            logging.WARNING, "GET /writer?\\x85forged failed with 404: Not Found"
        )

    def test_nothing_is_logged_below_the_loggers_level(self) -> None:
        logger = logging.getLogger("Writer")
        logger.setLevel(logging.ERROR)
        self.addCleanup(logger.setLevel, logging.NOTSET)
        self.request("/writer", raising(web.HTTPError(404)))
        self.assertEqual(failure_records(self.caplog), [])


class StatusLineTests(ErrorServiceCase):
    def test_a_reason_with_a_line_break_stays_off_the_status_line(self) -> None:
        error = web.HTTPError(400, reason="Bad\r\nSet-Cookie: session=forged")
        for path in ("/writer", "/problem", "/logger"):
            with self.subTest(path=path):
                response = self.request(path, raising(error))
                self.assertEqual((response.code, response.reason), (400, "Bad Request"))
                self.assertNotIn("Set-Cookie", response.headers)

    def test_send_error_with_a_bad_reason_on_a_non_standard_status(self) -> None:
        response = self.request("/logger", sending(499, reason="a\nb"))
        self.assertEqual((response.code, response.reason), (499, "Unknown"))

    def test_a_valid_custom_reason_is_kept(self) -> None:
        response = self.request(
            "/writer", raising(web.HTTPError(422, reason="Bad Widget"))
        )
        self.assertEqual((response.code, response.reason), (422, "Bad Widget"))

    def test_the_document_still_shows_the_reason(self) -> None:
        reason = "Ungültig <3>"
        response = self.request("/writer", raising(web.HTTPError(400, reason=reason)))
        self.assertEqual(response.reason, "Bad Request")
        self.assertEqual(decode(response)["message"], reason)


class ErrorWriterTests(ErrorServiceCase):
    def test_an_http_error(self) -> None:
        response = self.request("/writer", raising(web.HTTPError(404)))
        self.assertEqual(response.code, 404)
        self.assertEqual(
            response.headers["Content-Type"], "application/json; charset=UTF-8"
        )
        self.assertEqual(
            decode(response),
            {"type": "HTTPError", "message": "Not Found", "traceback": None},
        )

    def test_an_http_error_subclass_names_the_type(self) -> None:
        class Teapot(web.HTTPError):
            pass

        response = self.request(
            "/writer", raising(Teapot(418, reason="Short and stout"))
        )
        self.assertEqual(
            decode(response),
            {"type": "Teapot", "message": "Short and stout", "traceback": None},
        )

    def test_a_non_standard_status_is_unknown(self) -> None:
        response = self.request("/writer", raising(web.HTTPError(599)))
        self.assertEqual(response.code, 599)
        self.assertEqual(decode(response)["message"], "Unknown")

    def test_the_log_message_is_not_sent(self) -> None:
        error = web.HTTPError(409, "row locked by %s", SECRET)
        response = self.request("/writer", raising(error))
        self.assertEqual(decode(response)["message"], "Conflict")
        self.assertNotIn(SECRET.encode(), response.body)

    def test_send_error_log_message_is_not_sent(self) -> None:
        response = self.request("/writer", sending(503, log_message=SECRET))
        self.assertEqual(
            decode(response),
            {"type": None, "message": "Service Unavailable", "traceback": None},
        )

    def test_send_error_reason_is_the_message(self) -> None:
        response = self.request("/writer", sending(400, reason="Missing id"))
        self.assertEqual(
            decode(response), {"type": None, "message": "Missing id", "traceback": None}
        )

    def test_an_exception_tells_nothing(self) -> None:
        response = self.request("/writer", raising(KeyError(SECRET)))
        self.assertEqual(response.code, 500)
        self.assertEqual(
            decode(response),
            {"type": None, "message": "Internal Server Error", "traceback": None},
        )
        self.assertNotIn(SECRET.encode(), response.body)

    def test_an_unprintable_exception(self) -> None:
        response = self.request("/writer", raising(Unprintable()))
        self.assertEqual(response.code, 500)
        self.assertEqual(decode(response)["message"], "Internal Server Error")


class DebugErrorWriterTests(ErrorServiceCase):
    serve_traceback = True

    def test_an_exception_is_described(self) -> None:
        response = self.request("/writer", raising(KeyError(SECRET)))
        self.assertEqual(response.code, 500)
        document = decode(response)
        self.assertEqual(document["type"], "KeyError")
        self.assertEqual(document["message"], repr(SECRET))
        lines = document["traceback"]
        self.assertEqual(lines[0], "Traceback (most recent call last):")
        self.assertEqual(lines[-1], f"KeyError: {SECRET!r}")
        self.assertTrue(all("\n" not in line for line in lines))

    def test_an_unprintable_exception_still_gets_a_document(self) -> None:
        response = self.request("/writer", raising(Unprintable()))
        self.assertEqual(response.code, 500)
        document = decode(response)
        self.assertEqual(document["type"], "Unprintable")
        self.assertEqual(document["message"], "<Unprintable str() failed>")
        self.assertIn("Unprintable", document["traceback"][-1])

    def test_an_exception_without_text_shows_the_phrase(self) -> None:
        response = self.request("/writer", raising(RuntimeError()))
        self.assertEqual(decode(response)["message"], "Internal Server Error")

    def test_the_message_of_an_http_error_has_no_log_message(self) -> None:
        response = self.request("/writer", raising(web.HTTPError(404, "id %s", 7)))
        document = decode(response)
        self.assertEqual(
            (document["type"], document["message"]), ("HTTPError", "Not Found")
        )
        self.assertIsInstance(document["traceback"], list)

    def test_send_error_without_exception_has_no_traceback(self) -> None:
        response = self.request("/writer", sending(400))
        self.assertEqual(
            decode(response),
            {"type": None, "message": "Bad Request", "traceback": None},
        )


class ProblemDetailsWriterTests(ErrorServiceCase):
    def test_an_http_error(self) -> None:
        response = self.request(
            "/problem", raising(web.HTTPError(404, "id %s", SECRET))
        )
        self.assertEqual(response.code, 404)
        self.assertEqual(response.headers["Content-Type"], "application/problem+json")
        self.assertEqual(
            decode(response),
            {
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "instance": "/problem",
            },
        )

    def test_the_instance_has_no_query(self) -> None:
        response = self.request("/problem?token=abc", raising(web.HTTPError(403)))
        self.assertEqual(decode(response)["instance"], "/problem")

    def test_an_exception_tells_nothing(self) -> None:
        response = self.request("/problem", raising(ValueError(SECRET)))
        self.assertEqual(
            decode(response),
            {
                "type": "about:blank",
                "title": "Internal Server Error",
                "status": 500,
                "instance": "/problem",
            },
        )

    def test_an_unprintable_exception(self) -> None:
        response = self.request("/problem", raising(Unprintable()))
        self.assertEqual((response.code, decode(response)["status"]), (500, 500))


class DebugProblemDetailsWriterTests(ErrorServiceCase):
    serve_traceback = True

    def test_the_exception_member(self) -> None:
        response = self.request("/problem", raising(KeyError("which")))
        document = decode(response)
        self.assertNotIn("detail", document)
        exception = document["exception"]
        self.assertEqual(
            (exception["type"], exception["message"]), ("KeyError", "'which'")
        )
        self.assertEqual(exception["traceback"][-1], "KeyError: 'which'")

    def test_no_exception_member_without_exception(self) -> None:
        response = self.request("/problem", sending(400))
        self.assertNotIn("exception", decode(response))


class DetailedHTTPErrorTests(ErrorServiceCase):
    def detailed(self) -> mixins.DetailedHTTPError:
        class OutOfStock(mixins.DetailedHTTPError):
            pass

        return OutOfStock(
            409,
            "Only 3 left",
            log_message=f"sku 12 at {SECRET}",
            type_uri="https://example.com/problems/out-of-stock",
            title="Out of stock",
            instance="/orders/7",
            left=3,
        )

    def test_error_writer_shows_the_detail_and_extensions(self) -> None:
        response = self.request("/writer", raising(self.detailed()))
        self.assertEqual(response.code, 409)
        self.assertEqual(
            decode(response),
            {
                "type": "OutOfStock",
                "message": "Only 3 left",
                "traceback": None,
                "left": 3,
            },
        )

    def test_problem_details_writer_shows_every_member(self) -> None:
        response = self.request("/problem", raising(self.detailed()))
        self.assertEqual(
            decode(response),
            {
                "type": "https://example.com/problems/out-of-stock",
                "title": "Out of stock",
                "status": 409,
                "detail": "Only 3 left",
                "instance": "/orders/7",
                "left": 3,
            },
        )

    def test_defaults(self) -> None:
        response = self.request(
            "/problem", raising(mixins.DetailedHTTPError(400, "No name"))
        )
        self.assertEqual(
            decode(response),
            {
                "type": "about:blank",
                "title": "Bad Request",
                "status": 400,
                "detail": "No name",
                "instance": "/problem",
            },
        )

    def test_the_log_message_is_logged_not_sent(self) -> None:
        response = self.request("/writer", raising(self.detailed()))
        self.assertNotIn(SECRET.encode(), response.body)
        [record] = failure_records(self.caplog)
        self.assertEqual(
            record.getMessage(), f"GET /writer failed with 409: sku 12 at {SECRET}"
        )

    def test_the_detail_is_logged_without_log_message(self) -> None:
        self.request("/writer", raising(mixins.DetailedHTTPError(422, "Bad date")))
        [record] = failure_records(self.caplog)
        self.assertEqual(record.getMessage(), "GET /writer failed with 422: Bad date")

    def test_a_value_json_cannot_encode_is_sent_as_text(self) -> None:
        error = mixins.DetailedHTTPError(400, "Odd", value=1j)
        response = self.request("/writer", raising(error))
        self.assertEqual(decode(response)["value"], "1j")

    def test_an_unencodable_document_falls_back_to_the_phrase(self) -> None:
        for path in ("/writer", "/problem"):
            with self.subTest(path=path):
                error = mixins.DetailedHTTPError(400, "Odd", value=float("nan"))
                response = self.request(path, raising(error))
                self.assertEqual(response.code, 400)
                self.assertIn("Bad Request", decode(response).values())

    def test_extension_members_cannot_replace_the_documents_own(self) -> None:
        for name in ("status", "message", "traceback", "exception", "type"):
            with self.subTest(name=name), pytest.raises(ValueError, match=name):
                mixins.DetailedHTTPError(400, **{name: 1})


class YamlishResponder:
    """A handler's own send_response, as services wrote before mediatype."""

    def send_response(self, body: object) -> None:
        handler: Any = self
        handler.set_header("Content-Type", "text/x-own")
        handler.write(f"own:{json.dumps(body, sort_keys=True)}")


class OwnResponder(YamlishResponder, mixins.ErrorWriter, web.RequestHandler):
    def get(self) -> None:
        raise web.HTTPError(409, reason="Taken")


class OwnResponderTests(ErrorServiceCase):
    def get_app(self) -> web.Application:
        return web.Application([("/", OwnResponder)])

    def test_the_document_goes_through_the_handlers_send_response(self) -> None:
        response = self.fetch("/")
        self.assertEqual(response.code, 409)
        self.assertEqual(response.headers["Content-Type"], "text/x-own")
        self.assertEqual(
            response.body,
            b'own:{"message": "Taken", "traceback": null, "type": "HTTPError"}',
        )


def test_a_mixin_after_request_handler_is_accepted_as_before() -> None:
    # sprockets.http accepted this order (its mixins do nothing there).
    type("Late", (web.RequestHandler, mixins.ErrorLogger), {})
