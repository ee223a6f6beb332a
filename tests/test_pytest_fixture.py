"""The ``sprockets_app`` fixture, used as a pytest-tornado user would."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from tornado import httpclient, web

from sprockets_http.app import Application

EVENTS: list[str] = []


class PoolHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({"pool": self.application.settings["pool"]})


async def open_pool(application: Any, io_loop: Any) -> None:
    await asyncio.sleep(0)
    application.settings["pool"] = "open"
    EVENTS.append("before_run")


def close_pool(application: Any) -> None:
    application.settings["pool"] = "closed"
    EVENTS.append("shutdown")


@pytest.fixture
def app() -> web.Application:
    application = Application([("/", PoolHandler)])
    application.runner_callbacks["before_run"].append(open_pool)
    application.runner_callbacks["shutdown"].append(close_pool)
    return application


@pytest.fixture
def events() -> Iterator[list[str]]:
    EVENTS.clear()
    yield EVENTS
    assert EVENTS == ["before_run", "shutdown"]


@pytest.mark.gen_test
async def test_callbacks_ran_before_the_request(
    events: list[str],
    sprockets_app: Any,
    http_client: httpclient.AsyncHTTPClient,
    base_url: str,
) -> None:
    response = await http_client.fetch(base_url + "/")
    assert response.body == b'{"pool": "open"}'
    assert events == ["before_run"]
