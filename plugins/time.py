"""XEP-0202 Entity Time (the server's clock, in UTC)."""

from __future__ import annotations

import datetime

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.iq import IqRequest
from xmppd.plugin import Plugin

NS = "urn:xmpp:time"


class EntityTime(Plugin):
    name = "time"
    specs = ("XEP-0202 2.0",)
    features = (NS,)

    def setup(self) -> None:
        self.host.iq("get", NS, "time", self.get)

    def get(self, req: IqRequest) -> Element:
        now = datetime.datetime.fromtimestamp(self.host.clock.seconds(), datetime.UTC)
        el = st.make("time", NS)
        st.add(el, "tzo", NS, "+00:00")
        # Whole seconds: XEP-0082 allows fractions, but several clients fail to parse them.
        st.add(el, "utc", NS, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return el
