"""XEP-0157 Contact Addresses for XMPP Services: the addresses of the people behind a domain
(abuse reports, administrators, security, support ...) in its disco#info.

XEP-0157 §3: a server SHOULD answer disco#info requests to its bare domain with a XEP-0128
extended-information form whose FORM_TYPE is ``http://jabber.org/network/serverinfo`` and
whose fields are the ones registered for that FORM_TYPE (§7.1 of 1.0, and
``status-addresses`` which the XMPP Registrar's entry for the FORM_TYPE lists since):
``<kind>-addresses``, list-multi, each value a URI (``mailto:``, ``xmpp:``, ``https:`` ...).

The addresses are per host (``[hosts."example.org".contact]``, validated by xmppd.config).
When none are configured the host's configured administrators (``hosts.<d>.admins``) are
published as ``admin-addresses`` (``xmpp:`` URIs, RFC 5122), so a remote operator can always
reach someone; with no administrators either, no form is sent, as there is nothing to say.
The form is built when asked, so a configuration reload that changes the addresses is seen
at once (and changes the XEP-0115 verification string with them).
"""

from __future__ import annotations

from urllib.parse import quote

from twisted.words.xish.domish import Element

from plugins.disco import Disco
from xmppd.config import CONTACT_KINDS
from xmppd.forms import Form
from xmppd.plugin import Plugin

FORM_TYPE = "http://jabber.org/network/serverinfo"


class Contact(Plugin):
    name = "contact"
    specs = ("XEP-0157 1.0 (contact addresses; status-addresses as registered since)",)
    depends = ("disco",)

    def setup(self) -> None:
        self.disco = self.host.require(Disco)
        self.disco.add_extension(self.form)

    def teardown(self) -> None:
        self.disco.remove_extension(self.form)

    def addresses(self) -> dict[str, list[str]]:
        """kind -> URIs, as configured now (the admins' JIDs when nothing is)."""
        hc = self.host.config.hosts.get(self.host.domain)
        if hc is None:
            return {}
        out = {k: list(v) for k in CONTACT_KINDS if (v := getattr(hc.contact, k))}
        if not out and hc.admins:
            out["admin"] = ["xmpp:" + quote(a, safe="@.-_~!$&'()*+,;=") for a in hc.admins]
        return out

    def form(self) -> Element | None:
        addresses = self.addresses()
        if not addresses:
            return None
        form = Form("result")
        form.add("FORM_TYPE", "hidden", FORM_TYPE)
        for kind in CONTACT_KINDS:  # the registry's order: stable XEP-0115 hashes
            if kind in addresses:
                form.add(f"{kind}-addresses", "list-multi", addresses[kind])
        return form.to_element()
