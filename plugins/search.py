"""XEP-0055 Jabber Search over the user directory of this domain.

The search service is the domain itself (``to='example.org'``), advertised in the domain's
disco#info with the ``jabber:iq:search`` feature and a directory/user identity; no extra
route or DNS name is needed, and clients that browse the server (Gajim, slixmpp) find it.

Both request styles work: the legacy fields (first, last, nick, email; §2) answered with
``<item/>`` elements, and a XEP-0004 form with FORM_TYPE ``jabber:iq:search`` (§3) answered
with a result form. A ``get`` returns instructions, the legacy fields and the form.

Matching (storage/directory.py) is a case-insensitive substring test, all given fields must
match: ``first`` -> vCard N/GIVEN, ``last`` -> N/FAMILY, ``email`` -> EMAIL/USERID, ``nick``
-> NICKNAME *or the account name* (so accounts created with ``xmppd adduser``, which have no
vCard, are found by name), and in the form also ``x-fn`` -> FN and ``x-user`` -> the account
name alone (``x-`` names: fields beyond the registered ones, XEP-0068 §7). Results are at
most ``max_results`` (XEP-0055 has no paging), ordered by account name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from twisted.words.xish.domish import Element

from storage.directory import DirectoryEntry
from xmppd import forms
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.plugin import Plugin

NS = "jabber:iq:search"
INSTRUCTIONS = ("Fill in one or more fields to search for users of this server. Matching "
                "ignores case and finds parts of words.")

# (field, directory criterion, label); the first four are the legacy/registered fields.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("first", "given", "Given Name"),
    ("last", "family", "Family Name"),
    ("nick", "nick", "Nickname"),
    ("email", "email", "Email Address"),
    ("x-fn", "fn", "Full Name"),
    ("x-user", "user", "Username"),
)
LEGACY = ("first", "last", "nick", "email")
CRITERION = {f: c for f, c, _ in FIELDS}


@dataclass(frozen=True)
class Options:
    access: Literal["anyone", "local", "nobody"] = "local"  # who may search
    max_results: int = 50  # results returned for one search


class Search(Plugin):
    name = "search"
    specs = ("XEP-0055 1.2 (user directory on the domain; fields and data forms)",)
    features = (NS,)
    identities = (("directory", "user", "User directory"),)
    Options = Options
    live_options = True  # read when used: a reload may change them

    def setup(self) -> None:
        self.host.iq("get", NS, "query", self.get)
        self.host.iq("set", NS, "query", self.set)

    def check_access(self, req: IqRequest) -> None:
        """``access``: anyone, only users of domains served here, or nobody (forbidden; to
        remove the service entirely, take "search" out of plugins.enabled)."""
        if self.options.access == "nobody":
            raise StanzaError("forbidden", text="user search is disabled")
        if self.options.access == "local" and (
                req.from_ is None or not self.host.is_local(req.from_.domain)):
            raise StanzaError("forbidden", text="only users of this server may search")

    def get(self, req: IqRequest) -> Element:
        """§2 and §3: the fields (legacy and as a form) with instructions."""
        self.check_access(req)
        q = st.make("query", NS)
        st.add(q, "instructions", NS, INSTRUCTIONS)
        for name in LEGACY:
            st.add(q, name, NS)
        form = forms.Form("form", title="User Directory Search", instructions=[INSTRUCTIONS])
        form.add("FORM_TYPE", "hidden", NS)
        for var, _, label in FIELDS:
            form.add(var, "text-single", label=label)
        st.append(q, form.to_element())
        return q

    async def set(self, req: IqRequest) -> Element:
        """§2 legacy search or §3 form search; nothing to search for is a bad request."""
        self.check_access(req)
        x = st.child(req.payload, "x", forms.NS)
        if x is not None:
            form = forms.Form.parse(x)
            if form.type != "submit" or form.form_type not in (None, NS):
                raise StanzaError("bad-request", text="expected a jabber:iq:search form")
            given = {var: (form.value(var) or "").strip() for var in CRITERION}
        else:
            given = {name: (st.child_text(req.payload, name, NS) or "").strip()
                     for name in LEGACY}
        criteria = {CRITERION[var]: value for var, value in given.items() if value}
        if not criteria:
            raise StanzaError("bad-request", text="fill in at least one search field")
        found = await self.host.storage.directory.search(
            self.host.domain, criteria, self.options.max_results)
        q = st.make("query", NS)
        if x is not None:
            st.append(q, self.result_form(found))
            return q
        for entry in found:
            item = st.add(q, "item", NS, attrs={"jid": self.jid_of(entry)})
            for name, value in zip(LEGACY, self.legacy_values(entry), strict=True):
                st.add(item, name, NS, value)
        return q

    def jid_of(self, entry: DirectoryEntry) -> str:
        return f"{entry.username}@{self.host.domain}"

    @staticmethod
    def legacy_values(entry: DirectoryEntry) -> tuple[str, str, str, str]:
        """first, last, nick (the account name when the vCard has no NICKNAME), email."""
        return (entry.given or "", entry.family or "", entry.nick or entry.username,
                entry.email or "")

    def result_form(self, found: list[DirectoryEntry]) -> Element:
        """§3: a result form with a <reported/> header and one <item/> per match."""
        form = forms.Form("result", title="Search Results")
        form.add("FORM_TYPE", "hidden", NS)
        x = form.to_element()
        reported = st.add(x, "reported", forms.NS)
        columns = [("jid", "jid-single", "JID"), *[(v, "text-single", label)
                                                   for v, _, label in FIELDS[:5]]]
        for var, type_, label in columns:
            st.add(reported, "field", forms.NS, attrs={"var": var, "type": type_,
                                                       "label": label})
        for entry in found:
            item = st.add(x, "item", forms.NS)
            values = (self.jid_of(entry), *self.legacy_values(entry), entry.fn or "")
            for (var, _, _), value in zip(columns, values, strict=True):
                field = st.add(item, "field", forms.NS, attrs={"var": var})
                st.add(field, "value", forms.NS, value)
        return x
