"""Service limits (XEP-0045 §20.5 denial of service): rooms per user, occupants per room,
and message size. A dedicated server with small limits runs on each backend. Flood control
(a token bucket refilled over time) is tested on a Clock: tests/unit/test_muc_timing.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import start_server
from tests.integration.test_muc_support import (
    admin_set,
    close,
    codes,
    create,
    error_condition,
    join,
    messages,
    new_room,
    users,
)
from tests.support.ca import CertAuthority
from tests.support.client import run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
LIMITS = {"max_rooms_per_user": 2, "default_max_users": 3, "max_occupants": 4,
          "max_message_size": 1500, "message_rate": 2.0, "message_burst": 4}


@pytest.fixture(scope="module")
def srv(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp(f"muc-limits-{backend}"), backend, ca,
                            config={"plugins": {"muc": LIMITS}})


def test_rooms_per_user(srv: ServerProcess) -> None:
    async def body() -> None:
        owner, other = await users(srv, 2, "many")
        await create(owner, new_room(), "O")
        await create(owner, new_room(), "O")
        err = await join(owner, new_room(), "O")
        assert error_condition(err) == ("cancel", "not-allowed")  # §10.1.1
        await create(other, new_room(), "O")  # the limit is per user
        await close(owner, other)

    run(body())


def test_occupants_per_room(srv: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, a, b, c = await users(srv, 4, "full")
        await create(owner, room, "O")
        await join(a, room, "A")
        await join(b, room, "B")
        err = await join(c, room, "C")
        assert error_condition(err) == ("wait", "service-unavailable")  # §7.2.10
        # admins get in beyond the room's limit, up to the service's (§7.2.10)
        await admin_set(owner, room, f"<item affiliation='admin' jid='{c.boundjid.bare}'/>")
        assert codes(await join(c, room, "C")) == [110, 170]
        await close(owner, a, b, c)

    run(body())


def test_message_size(srv: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, flooder, calm = await users(srv, 3, "flood")
        await create(owner, room, "O")
        await join(flooder, room, "Flood")
        await join(calm, room, "Calm")
        flooder.send_raw(f"<message to='{room}' type='groupchat' id='big'><body>{'x' * 2000}"
                         "</body></message>")
        q = messages(flooder)
        while True:
            m = await asyncio.wait_for(q.get(), 10)
            if m["id"] == "big":
                break
        assert m["type"] == "error" and error_condition(m) == ("modify", "policy-violation")
        # flood control, which needs time to pass: tests/unit/test_muc_timing.py
        await close(owner, flooder, calm)

    run(body())
