"""A XEP-0227 file with something of every kind xmppd imports, for the pie tests; and a dump
of every table, to compare databases (what "changes nothing" means)."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import Connection, select

from storage.schema import metadata
from xmppd.accounts import derive

PASSWORD = "correct horse"
_CREDS = {c.mechanism: c for c in derive(PASSWORD, 4096)}


def scram(mech: str) -> str:
    c = _CREDS[mech]
    b = base64.b64encode
    return (f"<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='{mech}'>"
            f"<iter-count>{c.iterations}</iter-count><salt>{b(c.salt).decode()}</salt>"
            f"<server-key>{b(c.server_key).decode()}</server-key>"
            f"<stored-key>{b(c.stored_key).decode()}</stored-key></scram-credentials>")


PHOTO = base64.b64encode(b"\x89PNG fake image").decode()

SAMPLE = f"""<?xml version='1.0' encoding='UTF-8'?>
<!-- a comment is fine -->
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='localhost'>
    <user name='alice'>
      {scram("SCRAM-SHA-1")}
      {scram("SCRAM-SHA-256")}
      <query xmlns='jabber:iq:roster' ver='7'>
        <item jid='bob@localhost' name='Bobby' subscription='both'>
          <group>Friends</group><group>Work</group>
        </item>
        <item jid='carol@remote.example' subscription='none' ask='subscribe'/>
        <item jid='dave@remote.example' subscription='from' approved='true'/>
      </query>
      <presence xmlns='jabber:client' from='eve@remote.example/phone' type='subscribe'>
        <status>let me in</status>
      </presence>
      <vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>al</NICKNAME>
        <PHOTO><TYPE>image/png</TYPE><BINVAL>{PHOTO}</BINVAL></PHOTO></vCard>
      <query xmlns='jabber:iq:private'>
        <storage xmlns='storage:bookmarks'><conference jid='lobby@conference.localhost'
          autojoin='true'><nick>al</nick></conference></storage>
        <prefs xmlns='exodus:prefs'><defaultnick>Alice</defaultnick></prefs>
      </query>
      <blocklist xmlns='urn:xmpp:blocking'><item jid='spam@remote.example'/></blocklist>
      <kv xmlns='urn:xmppd:pie:0' store='mam-prefs' key='prefs'>{{"default": "roster"}}</kv>
      <query xmlns='jabber:iq:privacy'><list name='x'/></query>
      <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
        <configure node='urn:xmpp:avatar:metadata'>
          <x xmlns='jabber:x:data' type='submit'>
            <field var='FORM_TYPE' type='hidden'>
              <value>http://jabber.org/protocol/pubsub#node_config</value></field>
            <field var='pubsub#access_model'><value>open</value></field>
            <field var='pubsub#max_items'><value>5</value></field>
            <field var='pubsub#title'/>
          </x>
        </configure>
      </pubsub>
      <pubsub xmlns='http://jabber.org/protocol/pubsub'>
        <items node='urn:xmpp:avatar:metadata'>
          <item id='a1'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='a1' bytes='3'
            type='image/png'/></metadata></item>
          <item id='a2' publisher='alice@localhost/laptop'><metadata
            xmlns='urn:xmpp:avatar:metadata'/></item>
        </items>
        <items node='urn:xmpp:microblog:0'>
          <item id='post1'><entry xmlns='http://www.w3.org/2005/Atom'><title>hi</title></entry>
          </item>
        </items>
      </pubsub>
      <offline-messages>
        <message xmlns='jabber:client' from='bob@localhost/pc' to='alice@localhost'
            type='chat' id='m1'><body>while you were out</body>
          <delay xmlns='urn:xmpp:delay' from='localhost' stamp='2024-01-02T03:04:05Z'>Offline
            Storage</delay></message>
        <message xmlns='jabber:client' from='carol@remote.example' to='alice@localhost'
            id='m2'><body>second</body></message>
      </offline-messages>
      <archive xmlns='urn:xmpp:pie:0#mam'>
        <result xmlns='urn:xmpp:mam:2' id='sid-1'><forwarded xmlns='urn:xmpp:forward:0'>
          <delay xmlns='urn:xmpp:delay' stamp='2024-01-01T10:00:00.123456Z'/>
          <message xmlns='jabber:client' from='alice@localhost/pc' to='bob@localhost'
            type='chat' id='a'><body>hello bob</body></message></forwarded></result>
        <result xmlns='urn:xmpp:mam:2' id='sid-2'><forwarded xmlns='urn:xmpp:forward:0'>
          <delay xmlns='urn:xmpp:delay' stamp='2024-01-01T10:00:01Z'/>
          <message xmlns='jabber:client' from='bob@localhost/pc' to='alice@localhost/pc'
            type='chat' id='b'><body>hello alice &amp; all</body></message></forwarded>
        </result>
      </archive>
    </user>
    <user name='Bob' password='bob secret' xmlns:x='urn:xmppd:pie:0' x:disabled='true'
          x:last-login='2024-02-03T04:05:06Z'>
      <query xmlns='jabber:iq:roster'>
        <item jid='alice@localhost' subscription='both' name='Alice'/>
      </query>
    </user>
    <kv xmlns='urn:xmppd:pie:0' store='invites' key='tok'>{{"uses": 1}}</kv>
  </host>
  <host jid='conference.localhost'>
    <room xmlns='urn:xmppd:pie:0' name='lobby' created='2023-05-06T07:08:09.000001Z'
        secret='{"ab" * 32}'>
      <x xmlns='jabber:x:data' type='submit'>
        <field var='FORM_TYPE' type='hidden'>
          <value>http://jabber.org/protocol/muc#roomconfig</value></field>
        <field var='muc#roomconfig_roomname'><value>The Lobby</value></field>
        <field var='muc#roomconfig_persistentroom'><value>1</value></field>
        <field var='muc#roomconfig_membersonly'><value>true</value></field>
        <field var='muc#roomconfig_presencebroadcast'><value>moderator</value>
          <value>participant</value></field>
        <field var='muc#maxhistoryfetch'><value>30</value></field>
      </x>
      <subject nick='alice' stamp='2023-05-06T08:00:00Z'>Welcome!</subject>
      <item xmlns='http://jabber.org/protocol/muc#admin' jid='alice@localhost'
          affiliation='owner'/>
      <item xmlns='http://jabber.org/protocol/muc#admin' jid='bob@localhost'
          affiliation='member' nick='bobby'/>
      <item xmlns='http://jabber.org/protocol/muc#admin' jid='troll@remote.example'
          affiliation='outcast'><reason>spam</reason></item>
      <archive xmlns='urn:xmpp:pie:0#mam'>
        <result xmlns='urn:xmpp:mam:2' id='room-1'><forwarded xmlns='urn:xmpp:forward:0'>
          <delay xmlns='urn:xmpp:delay' stamp='2023-05-06T08:01:00Z'/>
          <message xmlns='jabber:client' from='lobby@conference.localhost/al'
            type='groupchat' id='g1'><body>first!</body></message></forwarded></result>
      </archive>
    </room>
  </host>
</server-data>
"""


def dump(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    out = {}
    for table in metadata.sorted_tables:
        stmt = select(table).order_by(*table.primary_key.columns)
        out[table.name] = [tuple(r) for r in conn.execute(stmt)]
    return out
