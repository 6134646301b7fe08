"""XEP-0012 Last Activity, answered by the server: its uptime (§5, a query to the domain)
and, for a user's bare JID (§3), the seconds since the user's last unavailable presence with
its status text, or 0 while the user has an available resource.

Only the user and entities allowed to see the user's presence (a subscription of "from" or
"both" in the user's roster) get an answer; others get ``forbidden`` (§3, §8). Blocked
entities never get that far (XEP-0191 answers them as an offline user). A query to a full
JID is delivered to that client by the core (§4). The last unavailable presence is the one
the presence plugin stores, stamped with XEP-0203 delay; an account that never went offline
has none (``item-not-found``). Uptime counts from when this plugin was loaded, i.e. server
start.
"""

from __future__ import annotations

import datetime

from twisted.words.xish.domish import Element

from plugins.presence import Presence
from plugins.roster import Roster
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.plugin import Plugin

NS = "jabber:iq:last"


def _query(seconds: float, text: str = "") -> Element:
    q = st.make("query", NS, {"seconds": str(max(0, int(seconds)))})
    if text:
        q.children.append(text)
    return q


class Last(Plugin):
    name = "last"
    specs = ("XEP-0012 2.0 (server uptime, last logout of contacts)",)
    features = (NS,)
    account_features = (NS,)
    depends = ("roster", "presence")

    def setup(self) -> None:
        self.roster = self.host.require(Roster)
        self.presence = self.host.require(Presence)
        self.host.iq("get", NS, "query", self.uptime)
        self.host.iq("get", NS, "query", self.last_activity, scope="account")

    def uptime(self, req: IqRequest) -> Element:
        """§5: how long the server has been up; no character data."""
        return _query(self.host.clock.seconds() - self.host.started_at)

    async def last_activity(self, req: IqRequest) -> Element:
        user = req.account
        if not req.is_own_account:
            if req.from_ is None:
                raise StanzaError("forbidden")
            roster = await self.roster.load(user)
            if roster.state(req.from_.bare_str).subscription not in ("from", "both"):
                raise StanzaError("forbidden")  # §3: not authorized to see presence
        if self.host.available_sessions(user):
            return _query(0)  # §3: at least one available resource
        last = await self.presence.last_unavailable(user)
        delay = None if last is None else st.child(last, "delay", st.NS_DELAY)
        if last is None or delay is None:
            raise StanzaError("item-not-found", text="no last activity recorded")
        try:
            stamp = delay.getAttribute("stamp", "").replace("Z", "+00:00")
            when = datetime.datetime.fromisoformat(stamp)  # an XEP-0082 DateTime
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.UTC)
        except ValueError:
            raise StanzaError("item-not-found", text="no last activity recorded") from None
        status = st.child_text(last, "status", st.NS_CLIENT) or ""
        return _query(self.host.clock.seconds() - when.timestamp(), status)
