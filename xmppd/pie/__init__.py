"""XEP-0227 (Portable Import/Export Format for XMPP-IM Servers, version 1.1) for xmppd:
``xmppd export`` writes it, ``xmppd import`` reads it, ``xmppd backup`` uses it for the
network databases.

What a file holds (namespaces in ``ns``):

* ``<server-data xmlns='urn:xmpp:pie:0'>`` with one ``<host jid/>`` per virtual host and one
  ``<user name/>`` per account ("Hosts", "Users"); files in the namespace of the 0.x
  versions are read too, and XInclude ``<include href/>`` of relative files is followed
  ("Use of XInclude": an importer MUST);
* credentials as ``<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism/>`` with
  ``iter-count``, ``salt``, ``server-key``, ``stored-key`` (base64), one per mechanism
  ("SCRAM credentials"): users keep their passwords and nobody learns them. A plaintext
  ``password`` attribute ("Users": MAY, not recommended; what older exporters write) is
  turned into verifiers on import and never written;
* the roster (``jabber:iq:roster`` as in RFC 6121 §2.1.2, with ``subscription``, ``ask``
  and ``approved``) and pending inbound subscription requests as the ``<presence
  type='subscribe'/>`` stanzas themselves (as Prosody and ejabberd write them);
* offline messages in ``<offline-messages/>`` with the XEP-0203 delay of when they were
  stored ("Offline Messages"); private XML (``jabber:iq:private``); the vCard
  (``vcard-temp``);
* PEP: node configurations as ``pubsub#owner`` ``<configure/>`` forms, items as ``pubsub``
  ``<items node/>``; the message archive as ``<archive xmlns='urn:xmpp:pie:0#mam'/>`` of
  XEP-0313 ``<result id/>`` elements, the id being the XEP-0359 stanza-id clients know.

XEP-0227 leaves MUC out of scope ("Requirements"). xmppd writes rooms as an extension the
XEP allows at any point ("File format": elements of other namespaces): under the
``<host/>`` of the MUC service, ``<room xmlns='urn:xmppd:pie:0' name/>`` holding the
configuration as the XEP-0045 §10.1.3 ``muc#roomconfig`` form, the affiliations as XEP-0045
``muc#admin`` ``<item/>`` elements, the subject, and the room archive in the same
``<archive/>`` form as a user's. The same namespace carries what only
xmppd keeps (blocklists as XEP-0191 ``<blocklist/>``, other per-user settings as ``<kv/>``,
creation times and archive 'with' values as attributes), so an export is a complete copy.

Elements the importer does not know are kept (and exported again) and reported, never
dropped silently ("File format": SHOULD ignore unknown data and notify the operator).
"""
