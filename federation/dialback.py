"""Server Dialback (XEP-0220) with keys generated as XEP-0185 recommends.

The three roles of XEP-0220 §1.3 map onto this server as follows:

* Initiating Server: an outbound stream sends ``<db:result/>`` with a key for the
  (Sender Domain, Target Domain) pair and waits for ``type='valid'`` (§2.1.1);
* Receiving Server: an inbound stream that got ``<db:result/>`` asks the Authoritative
  Server over our outbound stream to the Sender Domain with ``<db:verify/>`` (§2.1.2,
  §2.2.1);
* Authoritative Server: an inbound ``<db:verify/>`` is answered by recomputing the key from
  the secret (§2.2.2). Nothing is stored per key: XEP-0185 makes the key a function of the
  two domains, the stream ID and the secret.

Multiplexing ("piggybacking", §2.5): one stream may carry dialback for several domain
pairs; each ``<db:result/>`` is judged on its own and the stream keeps the set of verified
sender domains. Dialback errors (§2.4) are non-fatal for the stream.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.jid import JIDError, prepare_domain

NS_DB: Final = "jabber:server:dialback"
NS_DB_FEATURE: Final = "urn:xmpp:features:dialback"
DB_DECL: Final = f" xmlns:db='{NS_DB}'"
SECRET_FILE: Final = "dialback.secret"

# XEP-0220 §2.4: the stanza error conditions a dialback error may carry.
DIALBACK_ERRORS: Final = frozenset((
    "item-not-found", "remote-connection-failed", "remote-server-not-found",
    "remote-server-timeout", "policy-violation", "not-authorized", "forbidden",
    "not-acceptable", "bad-request", "internal-server-error",
))


def dialback_key(secret: str, receiving: str, originating: str, stream_id: str) -> str:
    """XEP-0185 §2: HMAC-SHA256(hex(SHA256(secret)), "receiving originating stream_id").

    The HMAC key is the hexadecimal SHA-256 of the secret (XEP-0185 note 4: hex output) and
    the three inputs are joined with single spaces (note 5).
    """
    hashed = hashlib.sha256(secret.encode("utf-8")).hexdigest().encode("ascii")
    message = f"{receiving} {originating} {stream_id}".encode()
    return hmac.new(hashed, message, hashlib.sha256).hexdigest()


def key_matches(secret: str, receiving: str, originating: str, stream_id: str,
                key: str) -> bool:
    """Constant-time comparison of a presented key with the one we would have generated."""
    expected = dialback_key(secret, receiving, originating, stream_id)
    return hmac.compare_digest(expected.encode(), key.strip().lower().encode())


def load_secret(configured: str, data_dir: Path) -> str:
    """The configured secret, or a random one kept in ``data_dir`` so that keys handed out
    before a restart still verify afterwards (XEP-0185 §2 note 3: no coordination needed)."""
    if configured:
        return configured
    path = data_dir / SECRET_FILE
    try:
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
    except OSError:
        pass
    value = secrets.token_hex(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    tmp.replace(path)
    return value


# -- wire format ---------------------------------------------------------------------------------
# XEP-0220 §2: dialback elements carry the 'db' prefix our stream headers declare, so they are
# written as text rather than through the stanza serializer (which only emits default
# namespaces).

def result_xml(from_: str, to: str, key: str | None = None, type_: str | None = None,
               error: str | None = None) -> str:
    """``<db:result/>``: a key (step 1) or the answer to one (step 4)."""
    return _db("result", from_, to, None, key, type_, error)


def verify_xml(from_: str, to: str, id_: str, key: str | None = None,
               type_: str | None = None, error: str | None = None) -> str:
    """``<db:verify/>``: a verification request (step 2) or its answer (step 3)."""
    return _db("verify", from_, to, id_, key, type_, error)


def _db(name: str, from_: str, to: str, id_: str | None, key: str | None, type_: str | None,
        error: str | None) -> str:
    attrs = f" from='{st.escape_attr(from_)}' to='{st.escape_attr(to)}'"
    if id_ is not None:
        attrs += f" id='{st.escape_attr(id_)}'"
    if type_ is not None:
        attrs += f" type='{type_}'"
    if error is not None:
        etype = "wait" if error == "remote-server-timeout" else "cancel"
        body = (f"<error type='{etype}'><{error} xmlns='{st.NS_STANZAS}'/></error>")
        return f"<db:{name}{attrs}>{body}</db:{name}>"
    if key is not None:
        return f"<db:{name}{attrs}>{st.escape_text(key)}</db:{name}>"
    return f"<db:{name}{attrs}/>"


def error_condition(el: Element) -> str:
    """The stanza error condition inside a ``type='error'`` dialback element (§2.4)."""
    for err in el.children:
        if isinstance(err, Element) and err.name == "error":
            for c in st.children(err, ns=st.NS_STANZAS):
                if c.name != "text":
                    return c.name
    return "undefined-condition"


def addresses(el: Element) -> tuple[str, str] | None:
    """The prepared ('from', 'to') domains of a dialback element, or None if unusable."""
    try:
        return (prepare_domain(el.getAttribute("from", "")),
                prepare_domain(el.getAttribute("to", "")))
    except JIDError:
        return None


def outcome(el: Element) -> str:
    """The answer an element of type 'valid', 'invalid' or 'error' carries (§2.4): 'valid',
    'invalid', or the error condition; anything else is 'undefined-condition'."""
    type_ = el.getAttribute("type", "")
    if type_ == "error":
        return error_condition(el)
    if type_ not in ("valid", "invalid"):
        return "undefined-condition"
    return type_


def features_xml() -> str:
    """XEP-0220 §2.4.2: we handle dialback errors gracefully."""
    return f"<dialback xmlns='{NS_DB_FEATURE}'><errors/></dialback>"
