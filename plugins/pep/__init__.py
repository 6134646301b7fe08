"""XEP-0163 Personal Eventing Protocol: every account is a virtual pubsub service.

The package, one concern a module:

* ``service.py``  nodes, items and access models (XEP-0060 §4.5, §6.5, §7, §8)
* ``config.py``   node configuration, PEP defaults, publish-options (XEP-0223), meta-data
* ``iq.py``       the pubsub and pubsub#owner requests and their error tables
* ``notify.py``   who is notified (presence + XEP-0115 +notify), last item on presence
* ``caps.py``     entity capabilities processing (XEP-0115 §5.4) with a verified cache
* ``disco.py``    the account's pubsub/pep identity, its nodes and their items (XEP-0030)
* ``avatars.py``  XEP-0084 avatars <-> vCard photo (XEP-0398)
* ``bookmarks.py`` XEP-0402 bookmarks <-> XEP-0048 in private XML and PEP (XEP-0411)

Payload-specific XEPs need nothing beyond the generic service: XEP-0172 nick
(``http://jabber.org/protocol/nick``), XEP-0384 OMEMO device lists and bundles (any
NodeID; ``pubsub#access_model`` open makes them readable by non-contacts and
``pubsub#max_items`` max keeps one bundle per device), XEP-0084 itself, and so on.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from plugins.pep import ns
from plugins.pep.avatars import AvatarBridge
from plugins.pep.bookmarks import BookmarksBridge
from plugins.pep.caps import CapsResolver
from plugins.pep.disco import AccountDisco
from plugins.pep.iq import PubsubIq
from plugins.pep.notify import Notifier
from plugins.pep.service import NODE_CHANGED, Service
from plugins.private import Private
from plugins.roster import Roster
from plugins.vcard import VCard
from xmppd import hooks as H
from xmppd.plugin import Plugin


@dataclass(frozen=True)
class Options:
    max_nodes: int = 1000  # nodes one account may have (more: <policy-violation/>)
    max_items: int = 1000  # items one node keeps at most; what pubsub#max_items 'max' means
    max_item_size: int = 262144  # bytes of one serialized payload (more: <payload-too-big/>)
    disco_timeout: float = 30.0  # seconds to wait for a client's XEP-0115 disco#info answer
    caps_cache_size: int = 10000  # verified caps 'ver' strings remembered


class Pep(Plugin):
    name = "pep"
    specs = ("XEP-0163 1.2", "XEP-0060 1.25 (PEP subset)", "XEP-0223 1.1.1",
             "XEP-0115 1.6 (+notify filtering)", "XEP-0084 1.1.4", "XEP-0398 0.2.1",
             "XEP-0402 1.1.4", "XEP-0411 1.1.0", "XEP-0172 1.1", "XEP-0384 0.8 (PEP nodes)")
    identities = (("pubsub", "pep", ""),)  # on the domain too, for clients that look there
    account_features = (
        ns.PUBSUB, *(f"{ns.PUBSUB}#{f}" for f in ns.FEATURES), ns.VCARD_CONVERSION,
        f"{ns.BOOKMARKS}#compat", f"{ns.BOOKMARKS}#compat-pep", ns.BOOKMARKS_CONVERSION)
    depends = ("disco", "roster", "vcard", "private")
    hooks = (NODE_CHANGED,)
    Options = Options

    def setup(self) -> None:
        self.stopping = False
        self.roster = self.host.require(Roster)
        self.service = Service(self)
        self.resolver = CapsResolver(self.host.request, self.options.disco_timeout,
                                     self.options.caps_cache_size)
        self.notifier = Notifier(self)
        self.bookmarks = BookmarksBridge(self, self.host.require(Private))
        self.avatars = AvatarBridge(self, self.host.require(VCard))
        iq, disco = PubsubIq(self), AccountDisco(self)
        self.host.iq("get", ns.PUBSUB, "pubsub", iq.get, scope="account")
        self.host.iq("set", ns.PUBSUB, "pubsub", iq.set, scope="account")
        self.host.iq("get", ns.OWNER, "pubsub", iq.owner_get, scope="account")
        self.host.iq("set", ns.OWNER, "pubsub", iq.owner_set, scope="account")
        self.host.on(H.STANZA_INBOUND, disco.inbound)  # after blocking (1000) and roster (100)
        self.host.on(H.PRESENCE_BROADCAST, self.notifier.own_presence, priority=-10)
        self.host.on(H.PRESENCE_INBOUND, self.notifier.contact_presence, priority=10)
        self.host.on(H.SESSION_BOUND, self.bound)
        self.host.on(H.SESSION_CLOSED, self.closed)
        self.host.on(H.ACCOUNT_DELETED, self.deleted)
        self.bookmarks.setup()
        self.avatars.setup()

    def teardown(self) -> None:
        self.stopping = True

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run work that must not hold up the stanza that caused it: a caps query waits for
        the very client whose presence is being processed, so awaiting it there would stall
        that client's stream until the query timed out."""
        Deferred.fromCoroutine(work).addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            return
        if self.stopping:  # storage may be gone already: not a fault worth a traceback
            self.log.info("PEP background work cut short by shutdown: {f}",
                          f=failure.getErrorMessage())
            return
        self.log.failure("PEP background work failed", failure)

    def bound(self, ev: H.SessionEvent) -> None:
        if ev.session.jid is not None:
            self.spawn(self.bookmarks.ensure(ev.session.jid.bare))

    def closed(self, ev: H.SessionEvent) -> None:
        self.notifier.session_closed(ev)
        self.bookmarks.evict(ev)
        jid = ev.session.jid
        if jid is not None and not self.host.sessions_of(jid.bare):
            self.service.cache.pop(jid.bare_str, None)

    def deleted(self, ev: H.AccountEvent) -> None:
        self.service.forget(ev.jid)
        self.notifier.forget(ev.jid)
        self.bookmarks.forget(ev.jid)
