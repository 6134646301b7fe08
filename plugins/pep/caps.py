"""What a client wants to be notified of: XEP-0115 entity capabilities, processed as
§5.4 says, reduced to the NodeIDs it advertises with ``+notify`` (XEP-0060 §9.2 filtered
notifications, XEP-0163 §2.5, §4.2).

* ``<c hash='sha-1' node ver/>`` (the hash this server can verify, through the same §5.1
  method as plugins/caps.py): the first time a ver is seen, disco#info is asked of the
  advertising resource at node "node#ver" (§6.2), the answer is checked for duplicate
  identities, features and FORM_TYPEs (§5.4 steps 3.3-3.5) and its verification string
  recomputed (3.6); only a matching answer is cached by ver for every JID (3.7). Concurrent
  sightings of one ver share one query.
* Another hash, a ver that did not verify, or the legacy format without 'hash' (§5.4
  steps 1-2): the answer is associated with that full JID only, never cached by ver
  (3.8: a mismatching answer must not poison the cache). 'ext' bundles of the legacy
  format are not queried.

A query that fails or times out leaves the resource without known interests (it then gets
no notifications, the "filtered-notifications" reading of XEP-0163 §4.3.2) until its next
presence.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.words.xish.domish import Element

from plugins.caps import verification_string
from plugins.pep import ns
from xmppd import forms
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqTimeout
from xmppd.jid import JID
from xmppd.logs import Logger

NOTIFY = "+notify"
_Result = tuple[frozenset[str] | None, str | None]  # (interests, JID asked)
log = Logger(namespace="xmppd.plugins.pep.caps")


@dataclass(frozen=True, slots=True)
class Caps:
    node: str
    ver: str
    hash: str | None  # None: the legacy format (XEP-0115 1.3)

    @classmethod
    def parse(cls, presence: Element) -> Caps | None:
        c = st.child(presence, "c", ns.CAPS)
        if c is None:
            return None
        node, ver = c.getAttribute("node"), c.getAttribute("ver")
        if not node or not ver or len(node) + len(ver) > 1024:
            return None
        return cls(node, ver, c.getAttribute("hash"))


def notify_nodes(features: frozenset[str]) -> frozenset[str]:
    """The NodeIDs named by ``<node>+notify`` features."""
    return frozenset(f[: -len(NOTIFY)] for f in features if f.endswith(NOTIFY) and
                     len(f) > len(NOTIFY))


def well_formed(info: Element) -> bool:
    """XEP-0115 §5.4 steps 3.3-3.5 on a disco#info <query/>."""
    identities = [(i.getAttribute("category", ""), i.getAttribute("type", ""),
                   st.lang(i) or "", i.getAttribute("name", ""))
                  for i in st.children(info, "identity", ns.DISCO_INFO)]
    if len(identities) != len(set(identities)):
        return False
    features = [f.getAttribute("var", "") for f in st.children(info, "feature", ns.DISCO_INFO)]
    if len(features) != len(set(features)):
        return False
    form_types: set[str] = set()
    for x in st.children(info, "x", forms.NS):
        for field in st.children(x, "field", forms.NS):
            if field.getAttribute("var") != "FORM_TYPE":
                continue
            values = {st.text(v) for v in st.children(field, "value", forms.NS)}
            if len(values) > 1:
                return False
            for value in values:
                if value in form_types:
                    return False
                form_types.add(value)
    return True


class CapsResolver:
    """Resolves (full JID, caps) to the set of +notify NodeIDs, asking as little as possible.

    ``request`` sends a server-originated IQ (Host.request): the query goes out from the
    bare JID of the account whose PEP service needs the answer (XEP-0163 §1.2 example)."""

    def __init__(self, request: Callable[[Element, float], Deferred[Element]],
                 timeout: float, cache_size: int) -> None:
        self.request = request
        self.timeout = timeout
        self.cache_size = cache_size
        self.by_ver: OrderedDict[str, frozenset[str]] = OrderedDict()  # verified sha-1 vers
        self.by_jid: OrderedDict[tuple[str, Caps], frozenset[str]] = OrderedDict()
        self.inflight: dict[tuple[Any, ...], list[Deferred[_Result]]] = {}

    def known(self, jid: JID, caps: Caps) -> frozenset[str] | None:
        """The +notify nodes if already known (no query needed), else None."""
        if caps.hash == "sha-1" and caps.ver in self.by_ver:
            self.by_ver.move_to_end(caps.ver)
            return self.by_ver[caps.ver]
        return self.by_jid.get((str(jid), caps))

    async def resolve(self, asker: JID, jid: JID, caps: Caps) -> frozenset[str] | None:
        found = self.known(jid, caps)
        if found is not None:
            return found
        if caps.hash == "sha-1":
            verified, asked = await self._shared(("ver", caps.ver), self._verify(asker, jid, caps))
            if verified is not None:
                return verified
            if asked == str(jid):  # that very JID already answered (or failed) just now
                return self.by_jid.get((str(jid), caps))
        result, _ = await self._shared(("jid", str(jid), caps), self._per_jid(asker, jid, caps))
        return result

    async def _shared(self, key: tuple[Any, ...], work: Coroutine[Any, Any, _Result]
                      ) -> _Result:
        """Run ``work`` once for concurrent callers with the same key; the others wait."""
        waiting = self.inflight.get(key)
        if waiting is not None:
            work.close()
            d: Deferred[_Result] = Deferred()
            waiting.append(d)
            return await d
        self.inflight[key] = []
        result: _Result = (None, None)
        try:
            result = await work
            return result
        finally:
            for w in self.inflight.pop(key, []):
                w.callback(result)

    async def _verify(self, asker: JID, jid: JID, caps: Caps) -> _Result:
        """§5.4 step 3: ask, check, recompute; cache by ver only what verifies."""
        info = await self._ask(asker, jid, caps)
        if info is None:
            return None, str(jid)
        interests = notify_nodes(_features(info))
        if well_formed(info) and verification_string(info) == caps.ver:
            self._remember(self.by_ver, caps.ver, interests)
            return interests, str(jid)
        log.info("caps of {jid} do not verify (ver {ver}); used for that JID only",
                 jid=str(jid), ver=caps.ver)
        self._remember(self.by_jid, (str(jid), caps), interests)
        return None, str(jid)

    async def _per_jid(self, asker: JID, jid: JID, caps: Caps) -> _Result:
        """§5.4 step 2 (and legacy caps): the answer belongs to this JID alone."""
        info = await self._ask(asker, jid, caps)
        if info is None:
            return None, str(jid)
        interests = notify_nodes(_features(info))
        self._remember(self.by_jid, (str(jid), caps), interests)
        return interests, str(jid)

    async def _ask(self, asker: JID, jid: JID, caps: Caps) -> Element | None:
        iq = st.iq("get", "", to=str(jid), from_=asker.bare_str)  # Host.request sets the id
        st.add(iq, "query", ns.DISCO_INFO, attrs={"node": f"{caps.node}#{caps.ver}"})
        try:
            answer = await self.request(iq, self.timeout)
        except (StanzaError, IqTimeout) as exc:
            log.info("no caps answer from {jid}: {exc}", jid=str(jid), exc=exc)
            return None
        return st.child(answer, "query", ns.DISCO_INFO)

    def _remember(self, cache: OrderedDict[Any, frozenset[str]], key: Any,
                  value: frozenset[str]) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)


def _features(info: Element) -> frozenset[str]:
    return frozenset(f.getAttribute("var", "") for f in
                     st.children(info, "feature", ns.DISCO_INFO))
