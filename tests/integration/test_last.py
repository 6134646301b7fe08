"""Last Activity (XEP-0012) answered by the server: uptime and users' last logout."""

from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError

from tests.integration.test_presence import befriend
from tests.support.barrier import barrier
from tests.support.client import connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


def test_uptime_and_last_logout_of_contacts(server: ServerProcess) -> None:
    (a, _), (b, _), (c, _) = server.new_user("a"), server.new_user("b"), server.new_user("c")

    async def body() -> None:
        ca = await connect(server, a + "/x", plugins=("xep_0012",))
        cb = await connect(server, b + "/x", plugins=("xep_0012",))
        cc = await connect(server, c + "/x", plugins=("xep_0012",))
        last = ca.plugin["xep_0012"].get_last_activity
        # §5: the server's uptime, without text
        res = await last("localhost")
        assert int(res["last_activity"]["seconds"]) >= 0
        assert res.xml.find("{jabber:iq:last}query").text is None
        await befriend(ca, cb)
        # §3: a contact with an available resource -> 0
        res = await last(b)
        assert int(res["last_activity"]["seconds"]) == 0
        assert str(res["from"]) == b
        # b leaves with a status; a (subscribed) learns how long ago and why
        cb.send_presence(ptype="unavailable", pstatus="gone fishing")
        await ca.next_presence(where=lambda p: p["from"].bare == b
                               and p["type"] == "unavailable")
        await barrier(cb)  # stored, after a was told
        await cb.close()
        # the seconds counting up: tests/unit/test_last_transcripts.py, on a Clock
        res = await last(b)
        assert 0 <= int(res["last_activity"]["seconds"]) <= 60
        assert res["last_activity"]["status"] == "gone fishing"
        # c has no subscription to b: forbidden (§3)
        with pytest.raises(IqError) as exc:
            await cc.plugin["xep_0012"].get_last_activity(b)
        assert exc.value.condition == "forbidden"
        # nor to a, who is online: still forbidden, availability is not leaked
        with pytest.raises(IqError) as exc:
            await cc.plugin["xep_0012"].get_last_activity(a)
        assert exc.value.condition == "forbidden"
        # one's own account is always allowed
        res = await cc.plugin["xep_0012"].get_last_activity(c)
        assert int(res["last_activity"]["seconds"]) == 0
        # b comes back: 0 again
        cb = await connect(server, b + "/y")
        await ca.next_presence(where=lambda p: p["from"] == cb.boundjid)
        res = await last(b)
        assert int(res["last_activity"]["seconds"]) == 0
        for x in (ca, cb, cc):
            await x.close()

    run(body())
