"""XEP-0092 Software Version."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from twisted.words.xish.domish import Element

from xmppd import __version__
from xmppd import stanza as st
from xmppd.iq import IqRequest
from xmppd.plugin import Plugin

NS = "jabber:iq:version"


@dataclass(frozen=True)
class Options:
    show_os: bool = False  # the OS line helps attackers more than users; off by default


class Version(Plugin):
    name = "version"
    specs = ("XEP-0092 1.1",)
    features = (NS,)
    Options = Options
    live_options = True  # read when used: a reload may change them

    def setup(self) -> None:
        self.host.iq("get", NS, "query", self.get)

    def get(self, req: IqRequest) -> Element:
        q = st.make("query", NS)
        st.add(q, "name", NS, "xmppd")
        st.add(q, "version", NS, __version__)
        if self.options.show_os:
            st.add(q, "os", NS, f"{platform.system()} {platform.release()}")
        return q
