"""``python -m examples.websocket_chat``: a chat room, and a deploy seen by its
clients."""

from __future__ import annotations

import asyncio
import json
import re
import signal

from support import Service
from tornado import websocket

CHAT = ["-m", "examples.websocket_chat"]


def test_members_chat_and_hear_the_service_stop(services: type[Service]) -> None:
    service = services(CHAT, env={"NUMBER_OF_PROCS": "1"})
    port = service.wait_serving()

    async def scenario() -> list[tuple[list[object], int | None, str | None]]:
        url = f"ws://127.0.0.1:{port}/chat"
        members = [await websocket.websocket_connect(url) for _ in range(2)]
        for member in members:
            assert json.loads(await member.read_message())["system"] == "welcome"
        members[0].write_message("hello")
        for member in members:
            assert json.loads(await member.read_message()) == {"said": "hello"}
        service.send(signal.SIGTERM)
        heard = []
        for member in members:
            messages = []
            while (message := await member.read_message()) is not None:
                messages.append(json.loads(message))
            member.close()
            heard.append((messages, member.close_code, member.close_reason))
        return heard

    for messages, code, reason in asyncio.run(asyncio.wait_for(scenario(), 30)):
        assert messages == [{"system": "draining", "close_code": 1001}]
        assert (code, reason) == (1001, "server stopping")
    assert service.wait() == 0
    assert service.count(r"a member left \(close code 1001\)") == 2


def test_a_client_reconnects_at_once_when_its_worker_is_replaced(
    services: type[Service],
) -> None:
    service = services(CHAT, env={"NUMBER_OF_PROCS": "2"})
    service.wait_for("all 2 workers ready")
    port = service.wait_serving()
    client = services([*CHAT, "client", f"ws://127.0.0.1:{port}/chat"])
    client.wait_for("'system': 'welcome'")

    service.send(signal.SIGHUP)
    mark = len(client.lines)
    client.wait_for("'system': 'draining', 'close_code': 1012", start=mark)
    client.wait_for("closed 1012 server restarting: reconnecting at once", start=mark)
    service.wait_for("rolling restart finished")
    new = re.findall(r"worker (\d+) started to replace", service.output)
    # Back at once, possibly first on the other old worker, told in turn.
    client.wait_for(rf"'system': 'welcome', 'pid': ({'|'.join(new)})}}", start=mark)
    assert client.count("cannot connect") == 0

    mark = len(client.lines)
    service.send(signal.SIGTERM)
    client.wait_for("closed 1001 server stopping: reconnecting in 1 s", start=mark)
    assert service.wait() == 0
