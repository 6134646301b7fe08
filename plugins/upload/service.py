"""The upload service's XMPP side (XEP-0363 §3-§5): the route target for upload.<domain>
that answers service discovery and hands out slots.

A slot is a row in ``storage.uploads`` (so quotas count it at once) plus a PUT URL signed
with the service key and a GET URL on the same path (§4: same host allowed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import DeferredLock
from twisted.words.xish.domish import Element

from plugins.disco import NS_INFO, NS_ITEMS
from plugins.ping import NS as NS_PING
from plugins.upload import slots
from plugins.upload.slots import NS
from storage.uploads import QuotaExceeded, UploadRecord
from xmppd import forms
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.timeutil import format_datetime

if TYPE_CHECKING:
    from plugins.upload import Upload

FEATURES = (NS_INFO, NS_ITEMS, NS, NS_PING)


class UploadService:
    """Receives every stanza for the service domain (and JIDs at it) from the router."""

    def __init__(self, plugin: Upload, domain: str) -> None:
        self.plugin = plugin
        self.host = plugin.host
        self.options = plugin.opts
        self.domain = domain
        self._locks: dict[str, DeferredLock] = {}

    async def receive(self, ev: H.StanzaEvent) -> None:
        stanza = ev.stanza
        if stanza.name != "iq":
            # RFC 6120 §8.3.1 / §10.5: messages to an entity that takes none get an error;
            # presence needs no answer.
            if stanza.name == "message" and stanza.getAttribute("type") not in (
                    "error", "groupchat"):
                raise StanzaError("service-unavailable")
            return
        itype = stanza.getAttribute("type")
        if itype not in ("get", "set"):
            return  # results and errors answer nothing we asked
        payload = next((c for c in stanza.children if isinstance(c, Element)), None)
        if payload is None or ev.to.local or ev.to.resource:
            raise StanzaError("service-unavailable")
        key = (itype, payload.uri, payload.name)
        if key == ("get", NS, "request"):
            result: Element | None = await self.request_slot(ev, payload)
        elif key == ("get", NS_INFO, "query"):
            result = self.disco_info(payload)
        elif key == ("get", NS_ITEMS, "query"):
            if payload.getAttribute("node"):
                raise StanzaError("item-not-found")
            result = st.make("query", NS_ITEMS)
        elif key == ("get", NS_PING, "ping"):
            result = None  # XEP-0199 §4.2: an empty result
        else:
            raise StanzaError("service-unavailable")  # RFC 6120 §8.4
        reply = st.result_for(stanza)
        if result is not None:
            st.append(reply, result)
        await self.host.send(reply)

    def disco_info(self, payload: Element) -> Element:
        """§3: identity store/file, the feature, and the XEP-0128 form with max-file-size."""
        if payload.getAttribute("node"):
            raise StanzaError("item-not-found")
        q = st.make("query", NS_INFO)
        st.add(q, "identity", NS_INFO, attrs={"category": "store", "type": "file",
                                              "name": self.options.name})
        for var in FEATURES:
            st.add(q, "feature", NS_INFO, attrs={"var": var})
        form = forms.Form("result")
        form.add("FORM_TYPE", "hidden", NS)
        form.add("max-file-size", None, str(self.options.max_file_size))
        st.append(q, form.to_element())
        return q

    # -- slots (§4, §5) -------------------------------------------------------------------------
    async def request_slot(self, ev: H.StanzaEvent, req: Element) -> Element:
        user = ev.from_
        if user.domain != self.host.domain or not user.local:
            raise StanzaError("not-allowed", text=f"only users of {self.host.domain} may "
                              "upload files here")
        try:
            filename = slots.check_filename(req.getAttribute("filename"))
            size = slots.parse_size(req.getAttribute("size"))
            ctype = req.getAttribute("content-type")
            content_type = slots.check_content_type(ctype) if ctype else ""
        except ValueError as exc:
            raise StanzaError("bad-request", text=str(exc)) from None
        limit = self.options.max_file_size
        if size > limit:
            raise too_large(limit)
        if not self.plugin.base_url:
            raise StanzaError("service-unavailable", text="no HTTPS listener or public URL "
                              "to upload to")
        now = int(self.host.clock.seconds())
        record = UploadRecord(
            slots.new_token(), user.domain, user.local, filename, size, content_type,
            "pending", now, now + int(self.options.slot_lifetime))
        refused = await self._reserve(user.bare_str, record)
        if refused is not None:
            raise self.quota_error(refused, size)
        signature = slots.sign(self.plugin.key, record.token, filename, size, content_type,
                               record.slot_expires)
        url = self.plugin.url_for(record.token, filename)
        slot = st.make("slot", NS)
        st.add(slot, "put", NS, attrs={"url": f"{url}?e={record.slot_expires}&s={signature}"})
        st.add(slot, "get", NS, attrs={"url": url})
        return slot

    async def _reserve(self, owner: str, record: UploadRecord) -> QuotaExceeded | None:
        """Check the quotas and insert the slot as one step per user: two resources asking at
        once must not both squeeze under the limit."""
        lock = self._locks.setdefault(owner, DeferredLock())
        await lock.acquire()
        try:
            o = self.options
            return await self.host.storage.uploads.reserve(
                record, o.quota, o.daily_quota, int(o.expire_after))
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(owner, None)

    def quota_error(self, refused: QuotaExceeded, size: int) -> StanzaError:
        """§5: a temporary error (resource-constraint, type wait) saying which quota, with a
        <retry stamp/> when it is known when the request would fit."""
        o = self.options
        if refused.limit == "daily":
            limit = o.daily_quota
            text = (f"Daily upload quota reached: {refused.used} of {limit} bytes requested "
                    "in the last 24 hours")
        else:
            limit = o.quota
            text = f"Upload quota reached: {refused.used} of {limit} bytes in use"
        when = slots.retry_at(refused.used, size, limit, refused.frees)
        retry = None
        if when is not None:
            retry = st.make("retry", NS, {"stamp": format_datetime(when * 1_000_000)})
        return StanzaError("resource-constraint", text=text, app_condition=retry)


def too_large(limit: int) -> StanzaError:
    """§5: not-acceptable (modify) with <file-too-large><max-file-size/></file-too-large>."""
    app = st.make("file-too-large", NS)
    st.add(app, "max-file-size", NS, str(limit))
    return StanzaError("not-acceptable", text=f"File too large. The maximum file size is "
                       f"{limit} bytes", app_condition=app)
