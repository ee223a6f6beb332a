"""The default log formats."""

from __future__ import annotations

import calendar
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from sprockets_http import context, logconfig


def record(created: float, exc_info: object = None) -> logging.LogRecord:
    made = logging.LogRecord(
        "svc.handler", logging.ERROR, __file__, 1, "%s failed", ("GET /",), exc_info
    )
    made.created = created
    return made


def test_json_lines_carry_the_record_and_the_service() -> None:
    formatter = logconfig.JSONFormatter(service="orders", environment="staging")
    created = calendar.timegm((2026, 11, 21, 4, 25, 37)) + 0.9991
    document = json.loads(formatter.format(record(created)))
    assert document == {
        "timestamp": "2026-11-21T04:25:37.999Z",
        "level": "ERROR",
        "logger": "svc.handler",
        "message": "GET / failed",
        "pid": document["pid"],
        "service": "orders",
        "environment": "staging",
    }
    # The next second is not served from the previous second's text.
    later = json.loads(formatter.format(record(created + 0.0015)))
    assert later["timestamp"] == "2026-11-21T04:25:38.000Z"


def test_a_traceback_stays_on_one_line() -> None:
    try:
        raise KeyError("secret")
    except KeyError:
        line = logconfig.JSONFormatter(service="", environment="").format(
            record(0.0, sys.exc_info())
        )
    assert "\n" not in line
    document = json.loads(line)
    assert "service" not in document and "environment" not in document
    assert document["exception"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'secret'" in document["exception"]


def test_service_and_environment_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVICE", "billing")
    monkeypatch.setenv("ENVIRONMENT", "production")
    document = json.loads(logconfig.JSONFormatter().format(record(0.0)))
    assert (document["service"], document["environment"]) == ("billing", "production")


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format must be 'text' or 'json'"):
        logconfig.default_config(log_format="xml")  # type: ignore[arg-type]


def test_json_keeps_every_extra_field_safely_on_one_line() -> None:
    made = logging.getLogger("svc").makeRecord(
        "svc",
        logging.INFO,
        __file__,
        1,
        "line\u2028break \x85 and \u2029",
        (),
        None,
        extra={
            "order": 7,
            "ratio": float("nan"),
            "when": object,
            "level": "mine",
            "nested": {"a": [1, 2]},
        },
    )
    line = logconfig.JSONFormatter(service="svc", environment="").format(made)
    assert len(line.splitlines()) == 1
    document = json.loads(line)
    assert document["message"] == "line\u2028break \x85 and \u2029"
    assert document["level"] == "INFO"
    assert document["extra_level"] == "mine"
    assert document["order"] == 7 and document["nested"] == {"a": [1, 2]}
    assert document["ratio"] == "nan"  # not JSON's NaN, which is no JSON
    assert document["when"] == "<class 'object'>"
    assert document["service"] == "svc"


def test_text_lines_add_fields_as_key_values() -> None:
    made = logging.getLogger("svc").makeRecord(
        "svc",
        logging.INFO,
        __file__,
        1,
        "hello",
        (),
        None,
        extra={"n": 1, "who": "a b"},
    )
    line = logconfig.TextFormatter().format(made)
    assert line.endswith('svc: hello n=1 who="a b"')


def test_a_callers_own_extra_name_wins_over_a_renamed_field() -> None:
    made = logging.getLogger("svc").makeRecord(
        "svc",
        logging.INFO,
        __file__,
        1,
        "message",
        (),
        None,
        extra={"level": "renamed", "extra_level": "own"},
    )
    line = logconfig.JSONFormatter(service="", environment="").format(made)
    assert line.count('"extra_level"') == 1
    assert json.loads(line)["extra_level"] == "own"


@pytest.fixture
def record_factory() -> Iterator[None]:
    """Puts back the record factory a test replaced."""
    factory = logging.getLogRecordFactory()
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)


@pytest.mark.usefixtures("record_factory")
def test_the_request_id_factory_wraps_the_one_in_place() -> None:
    calls: list[dict[str, object]] = []

    def tracing_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        calls.append(kwargs)
        made = logging.LogRecord(*args)
        made.trace_id = "t-1"
        return made

    logging.setLogRecordFactory(tracing_factory)
    context.install_record_factory()
    context.install_record_factory()  # a second call wraps nothing more

    logger = logging.getLogger("tests.factory")
    token = context._REQUEST_ID.set("r-1")
    try:
        made = logger.makeRecord(logger.name, logging.INFO, __file__, 3, "hi", (), None)
        # A caller may pass keywords of its own; they reach the factory.
        keyed = logging.getLogRecordFactory()(
            "x", logging.INFO, __file__, 1, "m", (), None, origin="queue"
        )
    finally:
        context._REQUEST_ID.reset(token)
    outside = logger.makeRecord(logger.name, logging.INFO, __file__, 3, "hi", (), None)

    assert (made.request_id, made.trace_id, made.getMessage()) == ("r-1", "t-1", "hi")
    assert (made.lineno, made.funcName) == (3, None)
    assert keyed.request_id == "r-1"
    assert calls == [{}, {"origin": "queue"}, {}]
    assert outside.request_id is None
