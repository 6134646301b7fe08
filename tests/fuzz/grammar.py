"""A generator of realistic XMPP: stanzas and nonzas from the namespaces the server handles.

Everything is built from a ``random.Random`` so that a case is a function of its seed. The
output is bytes that are well-formed most of the time; ``chaos`` turns on the awkward but
legal corners (prefixed and foreign-namespace attributes, xml:lang, entities, CDATA, deep
nesting, long values) and a few deliberately wrong values (bad JIDs, unknown types).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from xml.sax.saxutils import escape, quoteattr

from tests.fuzz.world import DOMAIN, OTHER_DOMAIN, REMOTE, USERS

MUC = f"conference.{DOMAIN}"
NS = {
    "roster": "jabber:iq:roster", "disco#info": "http://jabber.org/protocol/disco#info",
    "disco#items": "http://jabber.org/protocol/disco#items", "mam": "urn:xmpp:mam:2",
    "muc": "http://jabber.org/protocol/muc", "muc#user": "http://jabber.org/protocol/muc#user",
    "muc#admin": "http://jabber.org/protocol/muc#admin",
    "muc#owner": "http://jabber.org/protocol/muc#owner", "pubsub":
    "http://jabber.org/protocol/pubsub", "pubsub#owner": "http://jabber.org/protocol/pubsub#owner",
    "pubsub#event": "http://jabber.org/protocol/pubsub#event", "blocking": "urn:xmpp:blocking",
    "carbons": "urn:xmpp:carbons:2", "sm": "urn:xmpp:sm:3", "sasl":
    "urn:ietf:params:xml:ns:xmpp-sasl", "bind": "urn:ietf:params:xml:ns:xmpp-bind",
    "session": "urn:ietf:params:xml:ns:xmpp-session", "tls": "urn:ietf:params:xml:ns:xmpp-tls",
    "ping": "urn:xmpp:ping", "version": "jabber:iq:version", "time": "urn:xmpp:time",
    "last": "jabber:iq:last", "vcard": "vcard-temp", "private": "jabber:iq:private",
    "register": "jabber:iq:register", "search": "jabber:iq:search",
    "extdisco": "urn:xmpp:extdisco:2", "csi": "urn:xmpp:csi:0", "data": "jabber:x:data",
    "rsm": "http://jabber.org/protocol/rsm", "forward": "urn:xmpp:forward:0",
    "delay": "urn:xmpp:delay", "caps": "http://jabber.org/protocol/caps",
    "chatstates": "http://jabber.org/protocol/chatstates", "hints": "urn:xmpp:hints",
    "receipts": "urn:xmpp:receipts", "sid": "urn:xmpp:sid:0", "conference": "jabber:x:conference",
    "stanzas": "urn:ietf:params:xml:ns:xmpp-stanzas", "streams": "http://etherx.jabber.org/streams",
    "db": "jabber:server:dialback", "vcard-update": "vcard-temp:x:update",
    "bookmarks": "urn:xmpp:bookmarks:1", "avatar-meta": "urn:xmpp:avatar:metadata",
    "avatar-data": "urn:xmpp:avatar:data", "nick": "http://jabber.org/protocol/nick",
    "upload": "urn:xmpp:http:upload:0", "purge": "urn:xmppd:mam:purge:0",
    "framing": "urn:ietf:params:xml:ns:xmpp-framing", "oob": "jabber:x:oob",
}
STANZA_ERRORS = ("bad-request", "conflict", "feature-not-implemented", "forbidden", "gone",
                 "item-not-found", "jid-malformed", "not-acceptable",
                 "not-allowed", "not-authorized", "policy-violation", "recipient-unavailable",
                 "redirect", "registration-required", "remote-server-not-found",
                 "remote-server-timeout", "resource-constraint", "service-unavailable",
                 "subscription-required", "undefined-condition", "unexpected-request")
INTERESTING_TEXT = ("", " ", "0", "-1", "4294967296", "99999999999999999999", "1e309", "NaN",
                    "true", "\u202e", "\U0001f600", "a\u0301", "\ufeff", "ǅ", "ß", "İ",
                    "\u00a0", "x" * 1024, "../../etc/passwd", "%s%n", "' or 1=1 --",
                    "2024-02-30T25:61:61Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
                    "\u0660\u0661", "\uff46\uff55\uff4c\uff4c", "&", "<", "]]>")


class Gen:
    """One generator per case; ``chaos`` in [0, 1] is how often an odd corner is taken."""

    def __init__(self, rng: random.Random, chaos: float = 0.15, ns_attr: str = "",
                 s2s: bool = False) -> None:
        self.r = rng
        self.chaos = chaos
        self.ns_attr = ns_attr  # "" in streams (inherited), explicit on WebSocket messages
        self.s2s = s2s  # stanzas from a federated peer: 'from' and 'to' always set
        self.ids = 0

    def odd(self, scale: float = 1.0) -> bool:
        return self.r.random() < self.chaos * scale

    # -- atoms ---------------------------------------------------------------------------
    def ident(self) -> str:
        self.ids += 1
        if self.odd(0.2):
            return self.r.choice(["", "x" * 300, "\u00e9", "a b", "id", "bind"])
        return f"f{self.ids}"

    def word(self) -> str:
        r = self.r
        if self.odd():
            return r.choice(INTERESTING_TEXT)
        return "".join(r.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=r.randint(1, 10)))

    def text(self) -> str:
        """Element text, already escaped, possibly with entities, char refs and CDATA."""
        r = self.r
        parts = []
        for _ in range(r.randint(1, 4)):
            k = r.random()
            if k < 0.6 or not self.odd(3):
                parts.append(escape(r.choice(["hello", "hi there", "ünïcødé ✓", "日本語", "🎉",
                                              self.word(), "line\nbreak", "\t tab"])))
            elif k < 0.7:
                parts.append(r.choice(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]))
            elif k < 0.8:
                parts.append(f"&#{r.choice([65, 0x10FFFF, 0xFFFD, 0x1F600, 9, 10, 13])};")
            elif k < 0.9:
                parts.append(f"<![CDATA[{r.choice(['<b>x</b>', '', ']]', '&amp;'])}]]>")
            else:
                parts.append(escape(r.choice(INTERESTING_TEXT)))
        return "".join(parts)

    def jid(self, kind: str = "") -> str:
        r = self.r
        if self.odd(0.5):
            return r.choice([
                "", "@", "/", "@/", f"@{DOMAIN}", f"{DOMAIN}/", "a@b@c", "x" * 1100 + "@" + DOMAIN,
                f"{'l' * 1024}@{DOMAIN}", f"user@{DOMAIN}/{'r' * 1024}", "UPPER@LOCALHOST",
                "ǅ@localhost", "u@[::1]", "u@127.0.0.1", "u@xn--bcher-kva.example",
                f"u@{DOMAIN}.", "u@-bad-.example", "u\u0000@x", "u@exa mple", " @localhost",
                f"room@{MUC}/", f"room@{MUC}/{'n' * 2000}", f"{USERS[0]}@{DOMAIN}/\u202e"])
        kind = kind or r.choice(["user", "full", "domain", "muc", "occupant", "remote", "other"])
        user = r.choice((*USERS, "nobody", "alice"))
        if kind == "user":
            return f"{user}@{DOMAIN}"
        if kind == "full":
            return f"{user}@{DOMAIN}/{r.choice(['res', 'fuzz0', 'phone', self.word()])}"
        if kind == "domain":
            return r.choice([DOMAIN, OTHER_DOMAIN, MUC])
        if kind == "muc":
            return f"{r.choice(['room', 'lobby', 'r' + self.word()])}@{MUC}"
        if kind == "occupant":
            return f"{r.choice(['room', 'lobby'])}@{MUC}/{r.choice(['nick', 'n2', self.word()])}"
        if kind == "remote":
            return r.choice([f"peer@{REMOTE}", f"peer@{REMOTE}/r", REMOTE, "x@unknown.invalid"])
        return f"{user}@{OTHER_DOMAIN}"

    def attrs(self, pairs: dict[str, str | None]) -> str:
        """Attributes in random order, sometimes with xml:lang and foreign ones."""
        r = self.r
        items = [(k, v) for k, v in pairs.items() if v is not None]
        if self.odd():
            items.append(("xml:lang", r.choice(["en", "de-CH", "", "x" * 100, "zh-Hant-TW"])))
        if self.odd(0.5):
            items.append(("xmlns:f", "urn:fuzz:foreign"))
            items.append(("f:attr", self.word()))
        if self.odd(0.3):
            items.append((r.choice(["unknown", "type", "id"]) + ("2" if r.random() < 0.5
                                                                 else ""), self.word()))
        if self.odd(0.05):
            items.append(("big", "A" * r.choice([4096, 65536, 300000])))
        r.shuffle(items)
        # Duplicate names are not well-formed; drop later ones unless chaos wants them.
        seen: set[str] = set()
        out = []
        for k, v in items:
            if k in seen and not self.odd(0.2):
                continue
            seen.add(k)
            out.append(f" {k}={quoteattr(v)}" if r.random() < 0.7 else
                       " {}='{}'".format(k, escape(v, {"'": "&apos;"})))
        return "".join(out)

    def el(self, name: str, ns: str | None = None, attrs: dict[str, str | None] | None = None,
           children: str = "") -> str:
        a = dict(attrs or {})
        if ns is not None:
            a = {"xmlns": ns, **a}
        head = f"<{name}{self.attrs(a)}"
        if not children and self.r.random() < 0.6:
            return head + "/>"
        return f"{head}>{children}</{name}>"

    def nest(self, inner: str) -> str:
        """Deep nesting (sometimes past the parser's depth limit)."""
        depth = self.r.choice([3, 10, 30, 46, 47, 60, 200])
        ns = self.r.choice(["urn:fuzz:deep", NS["pubsub"], ""])
        x = " xmlns='" + ns + "'" if ns else ""
        return f"<d{x}>" * depth + inner + "</d>" * depth

    def form(self, form_type: str, fields: dict[str, list[str]]) -> str:
        r = self.r
        body = self.el("field", attrs={"var": "FORM_TYPE", "type": "hidden"},
                       children=f"<value>{escape(form_type)}</value>")
        for var, values in fields.items():
            vals = "".join(f"<value>{escape(v)}</value>" for v in values)
            body += self.el("field", attrs={"var": var, "type": r.choice(
                [None, "text-single", "list-multi", "jid-single", "boolean", "bogus"])},
                children=vals)
        return self.el("x", NS["data"], {"type": r.choice(["submit", "submit", "form",
                                                           "cancel", "result", "x"])}, body)

    def rsm(self) -> str:
        r = self.r
        parts = []
        if r.random() < 0.7:
            parts.append(f"<max>{r.choice(['0', '1', '10', '-5', '1000000', 'x'])}</max>")
        if r.random() < 0.3:
            parts.append(self.el("before", children=r.choice(["", self.word()])))
        if r.random() < 0.3:
            parts.append(f"<after>{escape(self.word())}</after>")
        if r.random() < 0.1:
            parts.append(f"<index>{r.choice(['0', '3', '-1'])}</index>")
        return self.el("set", NS["rsm"], children="".join(parts))

    # -- payloads ------------------------------------------------------------------------
    def iq_payload(self) -> tuple[str, str, str]:
        """(type, to-kind, payload)."""
        r = self.r
        choices: list[Callable[[], tuple[str, str, str]]] = [
            self._roster, self._disco, self._mam, self._muc_iq, self._pubsub, self._blocking,
            self._carbons, self._simple, self._vcard, self._private, self._register,
            self._search, self._bind, self._extdisco, self._upload]
        return r.choice(choices)()

    def _roster(self) -> tuple[str, str, str]:
        r = self.r
        if r.random() < 0.4:
            return "get", "none", self.el("query", NS["roster"],
                                          {"ver": r.choice([None, "", "1", self.word()])})
        items = ""
        for _ in range(r.choice([1, 1, 2, 5])):
            groups = "".join(f"<group>{self.text()}</group>" for _ in range(r.choice([0, 1, 3])))
            items += self.el("item", attrs={
                "jid": self.jid(r.choice(["user", "remote", "other", ""])),
                "name": r.choice([None, self.word()]),
                "subscription": r.choice([None, "remove", "both", "none", "from", "to", "bad"]),
                "ask": r.choice([None, None, "subscribe"])}, children=groups)
        return "set", "none", self.el("query", NS["roster"], children=items)

    def _disco(self) -> tuple[str, str, str]:
        r = self.r
        ns = NS["disco#info"] if r.random() < 0.6 else NS["disco#items"]
        node = r.choice([None, None, "http://jabber.org/protocol/commands", "urn:xmpp:avatar:data",
                         "x-roomuser-item", self.word()])
        return "get", r.choice(["domain", "user", "muc", "full", "occupant", "remote"]), self.el(
            "query", ns, {"node": node})

    def _mam(self) -> tuple[str, str, str]:
        r = self.r
        fields: dict[str, list[str]] = {}
        if r.random() < 0.5:
            fields["with"] = [self.jid()]
        if r.random() < 0.4:
            fields["start"] = [r.choice(["2020-01-01T00:00:00Z", "bogus", "9999-99-99"])]
        if r.random() < 0.3:
            fields["end"] = [r.choice(["2030-01-01T00:00:00Z", "", "2020-01-01T00:00:00.5+02:00"])]
        if r.random() < 0.2:
            fields[r.choice(["{urn:xmpp:mam:2}ids", "after-id", "before-id", "fulltext"])] = [
                self.word()]
        inner = ""
        if fields or r.random() < 0.5:
            inner += self.form(r.choice([NS["mam"], NS["mam"], "urn:other"]), fields)
        if r.random() < 0.6:
            inner += self.rsm()
        if r.random() < 0.1:
            inner += "<flip-page/>"
        kind = r.random()
        if kind < 0.7:
            return "set", r.choice(["none", "muc", "user"]), self.el(
                "query", NS["mam"], {"queryid": r.choice([None, self.word()])}, inner)
        if kind < 0.85:
            return "get", "none", self.el("query", NS["mam"])
        if kind < 0.95:
            return r.choice(["get", "set"]), "none", self.el(
                "prefs", NS["mam"], {"default": r.choice(["always", "never", "roster", "x"])},
                "<always><jid>a@localhost</jid></always><never/>")
        return "set", "none", self.el("purge", NS["purge"])

    def _muc_iq(self) -> tuple[str, str, str]:
        r = self.r
        k = r.random()
        if k < 0.35:
            items = "".join(self.el("item", attrs={
                "affiliation": r.choice([None, "owner", "admin", "member", "outcast", "none",
                                         "x"]),
                "role": r.choice([None, "moderator", "participant", "visitor", "none"]),
                "jid": r.choice([None, self.jid("user")]),
                "nick": r.choice([None, "nick", self.word()])},
                children=r.choice(["", "<reason>because</reason>"]))
                for _ in range(r.choice([1, 1, 2])))
            return r.choice(["get", "set"]), "muc", self.el("query", NS["muc#admin"],
                                                            children=items)
        if k < 0.75:
            if r.random() < 0.4:
                return "get", "muc", self.el("query", NS["muc#owner"])
            if r.random() < 0.2:
                return "set", "muc", self.el("query", NS["muc#owner"], children=self.el(
                    "destroy", attrs={"jid": r.choice([None, self.jid("muc")])},
                    children="<reason>bye</reason>"))
            fields = {f"muc#roomconfig_{n}": [v] for n, v in r.sample([
                ("roomname", self.word()), ("persistentroom", r.choice(["1", "0", "true", "x"])),
                ("publicroom", "1"), ("membersonly", r.choice(["0", "1"])),
                ("moderatedroom", r.choice(["0", "1"])), ("maxusers", r.choice(
                    ["10", "0", "-1", "none", "100000"])), ("whois", r.choice(
                        ["anyone", "moderators", "x"])), ("passwordprotectedroom", "1"),
                ("roomsecret", self.word()), ("changesubject", "1"), ("allowinvites", "1"),
                ("enablelogging", "1"), ("historylength", r.choice(["0", "20", "-3"]))],
                r.randint(0, 6))}
            return "set", "muc", self.el("query", NS["muc#owner"], children=self.form(
                "http://jabber.org/protocol/muc#roomconfig", fields))
        if k < 0.85:
            return "get", "muc", self.el("query", NS["disco#info"],
                                         {"node": r.choice([None, "x-roomuser-item"])})
        return "get", r.choice(["domain", "muc"]), self.el("unique", "http://jabber.org/protocol/muc#unique")

    def _pubsub(self) -> tuple[str, str, str]:
        r = self.r
        node = r.choice(["urn:xmpp:avatar:metadata", "urn:xmpp:avatar:data", NS["bookmarks"],
                         "http://jabber.org/protocol/tune", "storage:bookmarks",
                         "urn:xmpp:microblog:0", self.word(), ""])
        item_id = r.choice([None, "current", self.word(), "x" * 3000])
        payload = r.choice([
            f"<tune xmlns='http://jabber.org/protocol/tune'><artist>{self.text()}</artist></tune>",
            f"<conference xmlns='{NS['bookmarks']}' autojoin='{r.choice(['true', 'x'])}'"
            f" name='{escape(self.word())}'><nick>n</nick></conference>",
            f"<metadata xmlns='{NS['avatar-meta']}'><info bytes='{r.choice(['12', '-1', 'x'])}'"
            " id='abc' type='image/png'/></metadata>",
            f"<data xmlns='{NS['avatar-data']}'>{r.choice(['aGVsbG8=', '!!!', ''])}</data>",
            f"<nick xmlns='{NS['nick']}'>{self.text()}</nick>",
            "", self.nest("x")])
        k = r.random()
        if k < 0.45:
            opts = ""
            if r.random() < 0.3:
                opts = self.el("publish-options", children=self.form(
                    "http://jabber.org/protocol/pubsub#publish-options",
                    {"pubsub#persist_items": ["true"], "pubsub#access_model": [r.choice(
                        ["open", "presence", "whitelist", "roster", "authorize", "x"])],
                     "pubsub#max_items": [r.choice(["1", "max", "0", "-2", "10000000"])]}))
            inner = self.el("publish", attrs={"node": node}, children=self.el(
                "item", attrs={"id": item_id}, children=payload)) + opts
            return "set", r.choice(["none", "user"]), self.el("pubsub", NS["pubsub"],
                                                              children=inner)
        if k < 0.65:
            inner = self.el("items", attrs={"node": node, "max_items": r.choice(
                [None, "1", "0", "x"])}, children=r.choice(
                    ["", self.el("item", attrs={"id": item_id})]))
            return "get", r.choice(["user", "none", "full"]), self.el("pubsub", NS["pubsub"],
                                                                      children=inner)
        if k < 0.75:
            return "set", "none", self.el("pubsub", NS["pubsub"], children=self.el(
                "retract", attrs={"node": node, "notify": r.choice([None, "true", "1", "x"])},
                children=self.el("item", attrs={"id": item_id})))
        if k < 0.85:
            return "set", r.choice(["user", "none"]), self.el("pubsub", NS["pubsub"],
                                                              children=self.el(
                r.choice(["subscribe", "unsubscribe"]), attrs={"node": node,
                                                               "jid": self.jid("full")}))
        ops = r.choice(["configure", "delete", "purge", "default", "affiliations",
                        "subscriptions"])
        child = self.form("http://jabber.org/protocol/pubsub#node_config", {
            "pubsub#access_model": ["open"], "pubsub#max_items": ["5"]}) if (
            ops == "configure" and r.random() < 0.5) else ""
        return r.choice(["get", "set"]), "none", self.el("pubsub", NS["pubsub#owner"],
                                                         children=self.el(
            ops, attrs={"node": node}, children=child))

    def _blocking(self) -> tuple[str, str, str]:
        r = self.r
        if r.random() < 0.3:
            return "get", "none", self.el("blocklist", NS["blocking"])
        items = "".join(self.el("item", attrs={"jid": self.jid()})
                        for _ in range(r.choice([0, 1, 1, 3])))
        return "set", "none", self.el(r.choice(["block", "unblock"]), NS["blocking"],
                                      children=items)

    def _carbons(self) -> tuple[str, str, str]:
        return "set", "none", self.el(self.r.choice(["enable", "disable", "private"]),
                                      NS["carbons"])

    def _simple(self) -> tuple[str, str, str]:
        r = self.r
        ns, name = r.choice([(NS["ping"], "ping"), (NS["version"], "query"),
                             (NS["time"], "time"), (NS["last"], "query"),
                             (NS["session"], "session"), ("urn:fuzz:unknown", "query")])
        return r.choice(["get", "get", "set"]), r.choice(["domain", "none", "user", "full",
                                                          "remote", "muc", "occupant"]), self.el(
            name, ns)

    def _vcard(self) -> tuple[str, str, str]:
        r = self.r
        if r.random() < 0.5:
            return "get", r.choice(["none", "user", "muc"]), self.el("vCard", NS["vcard"])
        binval = r.choice(["aGk=", "%%%", ""])
        photo = r.choice(["", f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{binval}</BINVAL></PHOTO>"])
        return "set", "none", self.el("vCard", NS["vcard"], children=(
            f"<FN>{self.text()}</FN><NICKNAME>{self.text()}</NICKNAME>{photo}"))

    def _private(self) -> tuple[str, str, str]:
        r = self.r
        inner = r.choice(["<storage xmlns='storage:bookmarks'/>",
                          "<storage xmlns='storage:rosternotes'><note>x</note></storage>",
                          "<x xmlns='jabber:iq:private'/>", "", "<a/><b/>", "<n xmlns=''/>"])
        return r.choice(["get", "set"]), "none", self.el("query", NS["private"], children=inner)

    def registration(self) -> str:
        """A XEP-0077 payload (allowed before authentication)."""
        return self._register()[2]

    def _register(self) -> tuple[str, str, str]:
        r = self.r
        if r.random() < 0.3:
            return "get", r.choice(["none", "domain"]), self.el("query", NS["register"])
        kids = r.choice([
            f"<username>{self.word()}</username><password>{self.word()}</password>",
            "<remove/>", f"<password>{self.word()}</password>",
            f"<username>{USERS[0]}</username><password>pw</password>", "",
            self.form(NS["register"], {"username": [self.word()], "password": ["x"]})])
        return "set", r.choice(["none", "domain"]), self.el("query", NS["register"],
                                                            children=kids)

    def _search(self) -> tuple[str, str, str]:
        r = self.r
        if r.random() < 0.4:
            return "get", "domain", self.el("query", NS["search"])
        kids = r.choice([f"<nick>{self.word()}</nick>", f"<first>{self.text()}</first>",
                         self.form(NS["search"], {"search": [self.word()], "nick": ["a*"]}),
                         "<email/>"])
        return "set", "domain", self.el("query", NS["search"], children=kids)

    def _bind(self) -> tuple[str, str, str]:
        r = self.r
        res = r.choice(["", f"<resource>{self.word()}</resource>", "<resource/>",
                        f"<resource>{'r' * 2000}</resource>", "<resource>\u202e</resource>"])
        return "set", "none", self.el("bind", NS["bind"], children=res)

    def _extdisco(self) -> tuple[str, str, str]:
        r = self.r
        return r.choice(["get", "set"]), "domain", self.el("services", NS["extdisco"], {
            "type": r.choice([None, "stun", "turn", "x"])})

    def _upload(self) -> tuple[str, str, str]:
        r = self.r
        return "get", "domain", self.el("request", NS["upload"], {
            "filename": r.choice(["a.png", "", "../x", "\u202eexe.png"]),
            "size": r.choice(["10", "-1", "0", "x", "99999999999999"]),
            "content-type": r.choice([None, "image/png", "text/html"])})

    # -- stanzas -----------------------------------------------------------------------------
    def iq(self) -> str:
        r = self.r
        typ, to_kind, payload = self.iq_payload()
        if self.odd(0.3):
            typ = r.choice(["result", "error", "", "GET", "x"])
        if self.odd(0.2):
            payload = payload + payload  # two payloads (RFC 6120 §8.2.3: exactly one)
        if self.odd(0.1):
            payload = self.nest(payload)
        to = self._to(to_kind)
        return self.el("iq", self.ns_attr or None, {"type": typ, "id": self.ident(), "to": to,
                                                    "from": self._from()}, payload)

    def _from(self) -> str | None:
        if self.s2s:
            return self.jid("remote") if self.r.random() < 0.9 else self.jid()
        return self.jid() if self.odd(0.3) else None

    def _to(self, kind: str) -> str | None:
        if kind == "none":
            return self.jid("user") if self.s2s and self.r.random() < 0.9 else None
        return self.jid(kind)

    def message(self) -> str:
        r = self.r
        typ = r.choice([None, "chat", "chat", "groupchat", "headline", "normal", "error",
                        "bogus"])
        to = self.jid(r.choice(["user", "full", "muc", "occupant", "remote", "other", "domain"]))
        kids = []
        if r.random() < 0.8:
            kids.append(self.el("body", attrs={}, children=self.text()))
        if r.random() < 0.1:
            kids.append(self.el("subject", children=self.text()))
        if r.random() < 0.1:
            kids.append(f"<thread parent='{self.word()}'>{self.word()}</thread>")
        if r.random() < 0.2:
            kids.append(self.el(r.choice(["active", "composing", "paused", "gone"]),
                                NS["chatstates"]))
        if r.random() < 0.15:
            kids.append(self.el(r.choice(["no-store", "no-permanent-store", "store", "no-copy"]),
                                NS["hints"]))
        if r.random() < 0.1:
            kids.append(self.el("request", NS["receipts"]))
        if r.random() < 0.1:
            kids.append(self.el("private", NS["carbons"]))
        if r.random() < 0.1:
            kids.append(self.el("x", NS["muc#user"], children=self.el(
                r.choice(["invite", "decline"]), attrs={"to": self.jid("user")},
                children="<reason>join</reason>")))
        if r.random() < 0.05:
            kids.append(self.el("x", NS["conference"], {"jid": self.jid("muc")}))
        if r.random() < 0.08:
            kids.append(self.el("stanza-id", NS["sid"], {"id": "spoof", "by": self.jid()}))
        if r.random() < 0.08:
            kids.append(self.el(r.choice(["received", "sent"]), NS["carbons"], children=self.el(
                "forwarded", NS["forward"], children=self.el(
                    "message", "jabber:client", {"to": self.jid(), "from": self.jid()},
                    "<body>fwd</body>"))))
        if r.random() < 0.05:
            kids.append(self.el("delay", NS["delay"], {"stamp": r.choice(
                ["2020-01-01T00:00:00Z", "x"]), "from": self.jid()}))
        if r.random() < 0.05:
            kids.append(self.el("event", NS["pubsub#event"], children=self.el(
                "items", attrs={"node": "x"})))
        if typ == "error" or self.odd(0.2):
            kids.append(self.error())
        if self.odd(0.1):
            kids.append(self.nest(self.el("body", children="deep")))
        r.shuffle(kids)
        return self.el("message", self.ns_attr or None, {
            "type": typ, "to": to, "id": r.choice([None, self.ident()]), "from": self._from()},
            "".join(kids))

    def presence(self) -> str:
        r = self.r
        typ = r.choice([None, None, None, "unavailable", "subscribe", "subscribed",
                        "unsubscribe", "unsubscribed", "probe", "error", "invisible"])
        to_kind = r.choice(["none", "none", "user", "occupant", "occupant", "remote", "other",
                            "full", "muc", "domain"])
        to = self._to(to_kind)
        kids = []
        if r.random() < 0.3:
            kids.append(f"<show>{r.choice(['away', 'chat', 'dnd', 'xa', 'bogus', ''])}</show>")
        if r.random() < 0.3:
            kids.append(self.el("status", children=self.text()))
        if r.random() < 0.3:
            kids.append(f"<priority>{r.choice(['0', '5', '-128', '127', '128', 'x', ''])}"
                        "</priority>")
        if r.random() < 0.3:
            kids.append(self.el("c", NS["caps"], {"hash": r.choice(["sha-1", "md5", None]),
                                                  "node": "http://fuzz", "ver": r.choice(
                                                      ["QgayPKawpkPSDYmwT/WM94uAlu0=", "x", ""])}))
        if to_kind in ("occupant", "muc") or r.random() < 0.05:
            hist = self.el("history", attrs={r.choice(["maxstanzas", "maxchars", "seconds",
                                                       "since"]): r.choice(
                ["0", "5", "-1", "x", "2020-01-01T00:00:00Z"])}) if r.random() < 0.3 else ""
            pw = f"<password>{self.word()}</password>" if r.random() < 0.2 else ""
            kids.append(self.el("x", NS["muc"], children=hist + pw))
        if r.random() < 0.1:
            kids.append(self.el("x", NS["vcard-update"], children=r.choice(
                ["<photo/>", "<photo>abc</photo>", ""])))
        if typ == "error" or self.odd(0.1):
            kids.append(self.error())
        return self.el("presence", self.ns_attr or None, {
            "type": typ, "to": to, "id": r.choice([None, self.ident()]), "from": self._from()},
            "".join(kids))

    def error(self) -> str:
        r = self.r
        cond = self.el(r.choice(STANZA_ERRORS), NS["stanzas"])
        text = self.el("text", NS["stanzas"], children=self.text()) if r.random() < 0.3 else ""
        return self.el("error", attrs={"type": r.choice(["cancel", "modify", "auth", "wait",
                                                         "continue", "x", None])},
                       children=cond + text)

    def stanza(self) -> str:
        k = self.r.random()
        if k < 0.45:
            return self.iq()
        if k < 0.75:
            return self.message()
        return self.presence()

    def nonza(self) -> str:
        """Stream management, CSI and friends (valid only on a bound c2s stream)."""
        r = self.r
        return r.choice([
            lambda: self.el("enable", NS["sm"], {"resume": r.choice([None, "true", "1", "x"]),
                                                 "max": r.choice([None, "60", "-1", "x"])}),
            lambda: self.el("r", NS["sm"]),
            lambda: self.el("a", NS["sm"], {"h": r.choice(["0", "1", "4294967295", "4294967296",
                                                           "-1", "x", None])}),
            lambda: self.el("resume", NS["sm"], {"previd": self.word(), "h": r.choice(
                ["0", "x", None])}),
            lambda: self.el(r.choice(["active", "inactive"]), NS["csi"]),
            lambda: self.el("unknown", "urn:fuzz:nonza"),
            lambda: self.el("features", NS["streams"]) if r.random() < 0.5 else
            "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict "
            "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        ])()

    def sasl(self) -> str:
        r = self.r
        mech = r.choice(["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
                         "EXTERNAL", "DIGEST-MD5", "ANONYMOUS", "", "plain"])
        body = r.choice(["", "=", "AGFsaWNlAHB3", "AGFsaWNlAHdyb25n",
                         "biwsbj1hbGljZSxyPWZ5a29kN3NkaGQ=", "!!!notbase64", "A" * 10000,
                         "AA==", "bix", "cmVtb3RlLmV4YW1wbGU=", "eCwsbj1hLHI9YQ=="])
        k = r.random()
        if k < 0.5:
            return self.el("auth", NS["sasl"], {"mechanism": mech}, body)
        if k < 0.8:
            return self.el("response", NS["sasl"], children=body)
        if k < 0.9:
            return self.el("abort", NS["sasl"])
        return self.el("success", NS["sasl"])
