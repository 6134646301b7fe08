"""XEP-0199 XMPP Ping: answer pings, and ping idle clients to find half-dead connections.

A client that has sent nothing for ``interval`` seconds gets a ping; if no answer comes
within ``timeout`` the stream is closed with <connection-timeout/> (RFC 6120 §4.9.3.4), which
ends the session like any other dropped connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from xmppd import stanza as st
from xmppd.errors import StreamError
from xmppd.iq import IqRequest, IqTimeout
from xmppd.plugin import Plugin
from xmppd.sessions import Session

NS = "urn:xmpp:ping"


@dataclass(frozen=True)
class Options:
    interval: float = 300.0  # seconds of client silence before the server pings; 0 = never
    timeout: float = 60.0  # seconds to wait for the answer


class Ping(Plugin):
    name = "ping"
    specs = ("XEP-0199 2.0.1",)
    features = (NS,)
    account_features = (NS,)
    Options = Options

    def setup(self) -> None:
        self.host.iq("get", NS, "ping", self.pong)
        self.host.iq("get", NS, "ping", self.pong, scope="account")
        self.loop: LoopingCall | None = None
        if self.options.interval > 0:
            self.loop = LoopingCall(self.sweep)
            self.loop.clock = self.host.clock
            self.loop.start(min(self.options.interval, 30.0), now=False)

    def teardown(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()

    def pong(self, req: IqRequest) -> None:
        return None

    def sweep(self) -> None:
        now = self.host.clock.seconds()
        for session in self.host.all_sessions():
            if session.kind != "c2s" or session.data.get("ping_pending"):
                continue
            last = getattr(session, "last_active", now)
            if now - last >= self.options.interval:
                self.ping(session)

    def ping(self, session: Session) -> None:
        if session.jid is None:
            return
        iq = st.iq("get", self.host.new_iq_id(), to=str(session.jid),
                   from_=self.host.domain)
        st.add(iq, "ping", NS)
        session.data["ping_pending"] = True
        d = self.host.request(iq, self.options.timeout)

        def answered(_: object) -> None:
            session.data.pop("ping_pending", None)

        def failed(failure: Failure) -> None:
            session.data.pop("ping_pending", None)
            if failure.check(IqTimeout):
                self.log.info("{jid} did not answer a ping; closing", jid=str(session.jid))
                session.close(StreamError("connection-timeout"))
            # An error reply (even service-unavailable) proves the client is alive.

        d.addCallbacks(answered, failed)
