"""The pytest example of the documentation, run as a service's test would be.

It needs only pytest and sprockets_http installed (pytest-tornado may be
installed too): ``pytest examples/testing``.
"""

from __future__ import annotations

import pytest
from tornado import httpclient, ioloop, web

from sprockets_http.app import Application, CallbackManager


class OrdersHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({"orders": self.settings["database"]["orders"]})


async def connect(application: web.Application, io_loop: ioloop.IOLoop) -> None:
    # Stands for opening a connection pool before the first request.
    application.settings["database"] = {"orders": []}


def make_app() -> Application:
    application = Application([("/orders", OrdersHandler)])
    application.runner_callbacks["before_run"].append(connect)
    return application


@pytest.fixture
def app() -> Application:
    return make_app()


@pytest.mark.gen_test
async def test_lists_orders(
    sprockets_app: CallbackManager,
    http_client: httpclient.AsyncHTTPClient,
    base_url: str,
) -> None:
    response = await http_client.fetch(base_url + "/orders")
    assert response.code == 200
    assert response.body == b'{"orders": []}'
