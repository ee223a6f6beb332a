"""Shared fixtures.

``services`` starts real service processes (see :mod:`support`); every
process group still alive at the end of a test is killed, even when the test
failed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import Service


@pytest.fixture
def services() -> Iterator[type[Service]]:
    """Start :class:`Service` processes; their groups are killed afterwards."""
    started: list[Service] = []

    class TrackedService(Service):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield TrackedService
    for service in started:
        service.kill_group()
