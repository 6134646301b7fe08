"""Running XEP-0050 commands with slixmpp's xep_0050 client, as an admin's client would."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from slixmpp import Iq
from slixmpp.exceptions import IqError

from tests.support.client import Client

NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_ADMIN = "http://jabber.org/protocol/admin"
NS_DATA = "jabber:x:data"
PLUGINS = ("xep_0004", "xep_0050")


def node(name: str) -> str:
    return f"{NS_ADMIN}#{name}" if ":" not in name else name


def submit_form(fields: dict[str, str | list[str]], form_type: str = NS_ADMIN) -> ET.Element:
    x = ET.Element(f"{{{NS_DATA}}}x", type="submit")
    ft = ET.SubElement(x, f"{{{NS_DATA}}}field", var="FORM_TYPE", type="hidden")
    ET.SubElement(ft, f"{{{NS_DATA}}}value").text = form_type
    for var, values in fields.items():
        f = ET.SubElement(x, f"{{{NS_DATA}}}field", var=var)
        for v in [values] if isinstance(values, str) else values:
            ET.SubElement(f, f"{{{NS_DATA}}}value").text = v
    return x


async def send(c: Client, name: str, action: str = "execute", sessionid: str | None = None,
               fields: dict[str, str | list[str]] | None = None, to: str = "localhost",
               form_type: str = NS_ADMIN) -> Iq:
    payload = None if fields is None else submit_form(fields, form_type)
    iq: Iq = await c.plugin["xep_0050"].send_command(to, node(name), action=action,
                                              sessionid=sessionid, payload=payload)
    return iq


async def run(c: Client, name: str, fields: dict[str, str | list[str]] | None = None,
              to: str = "localhost", form_type: str = NS_ADMIN) -> Iq:
    """Execute; if a form comes back, submit ``fields`` with it (XEP-0133's two steps)."""
    first = await send(c, name, to=to)
    if first["command"]["status"] != "executing":
        return first
    assert fields is not None, f"{name} asked for a form"
    return await send(c, name, "complete", first["command"]["sessionid"], fields, to,
                      form_type)


def values(iq: Iq) -> dict[str, Any]:
    """var -> value (str) or values (list) of the result form."""
    out: dict[str, Any] = {}
    x = iq.xml.find(f"{{{NS_COMMANDS}}}command/{{{NS_DATA}}}x")
    if x is None:
        return out
    for f in x.findall(f"{{{NS_DATA}}}field"):
        vals = [v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")]
        out[f.get("var", "")] = vals[0] if len(vals) == 1 and f.get("type") not in (
            "jid-multi", "list-multi", "text-multi") else vals
    return out


def form_fields(iq: Iq) -> dict[str, ET.Element]:
    x = iq.xml.find(f"{{{NS_COMMANDS}}}command/{{{NS_DATA}}}x")
    assert x is not None and x.get("type") == "form", ET.tostring(iq.xml)
    return {f.get("var", ""): f for f in x.findall(f"{{{NS_DATA}}}field")}


def notes(iq: Iq) -> list[tuple[str, str]]:
    return [(n.get("type", "info"), n.text or "")
            for n in iq.xml.findall(f"{{{NS_COMMANDS}}}command/{{{NS_COMMANDS}}}note")]


def error(exc: IqError) -> tuple[str, str | None]:
    """(stanza condition, commands-namespace condition or None) of an error reply."""
    err = exc.iq.xml.find("{jabber:client}error")
    assert err is not None
    general = next(c.tag.split("}")[1] for c in err
                   if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}")
                   and not c.tag.endswith("}text"))
    specific = next((c.tag.split("}")[1] for c in err
                     if c.tag.startswith(f"{{{NS_COMMANDS}}}")), None)
    return general, specific
