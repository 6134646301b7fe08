"""XEP-0115 §5.1 verification strings against the XEP's own examples (§5.2, §5.3)."""

from __future__ import annotations

from plugins.caps import verification_string
from xmppd.xmlparser import parse_fragment

SIMPLE = """<query xmlns='http://jabber.org/protocol/disco#info'>
  <identity category='client' name='Exodus 0.9.1' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
</query>"""

COMPLEX = """<query xmlns='http://jabber.org/protocol/disco#info'
         node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='\u03a8 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'>
      <value>urn:xmpp:dataforms:softwareinfo</value>
    </field>
    <field var='ip_version'>
      <value>ipv4</value>
      <value>ipv6</value>
    </field>
    <field var='os'>
      <value>Mac</value>
    </field>
    <field var='os_version'>
      <value>10.5.1</value>
    </field>
    <field var='software'>
      <value>Psi</value>
    </field>
    <field var='software_version'>
      <value>0.11</value>
    </field>
  </x>
</query>"""


def test_simple_example() -> None:
    assert verification_string(parse_fragment(SIMPLE)) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_complex_example() -> None:
    assert verification_string(parse_fragment(COMPLEX)) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_order_of_elements_does_not_matter() -> None:
    reordered = SIMPLE.replace(
        "<feature var='http://jabber.org/protocol/caps'/>", "").replace(
        "</query>", "<feature var='http://jabber.org/protocol/caps'/></query>")
    assert verification_string(parse_fragment(reordered)) == "QgayPKawpkPSDYmwT/WM94uAlu0="
    other = SIMPLE.replace("muc'", "muc#user'")
    assert verification_string(parse_fragment(other)) != "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_forms_without_a_hidden_form_type_are_ignored() -> None:
    extra = COMPLEX.replace("</query>", (
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'>"
        "<value>urn:example:not-hidden</value></field><field var='a'><value>b</value>"
        "</field></x></query>"))
    assert verification_string(parse_fragment(extra)) == "q07IKJEyjvHSyhy//CH0CxmKi8w="
