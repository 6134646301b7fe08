"""Accounts and their credentials in XEP-0227 files ("Users", "SCRAM credentials").

Import keeps what the file says a user's login secrets are: the SCRAM verifiers as they are
(RFC 5802 §3: salt, iteration count, StoredKey, ServerKey), so users keep their passwords
and nobody learns them; a plaintext ``password`` attribute becomes verifiers for every hash
xmppd offers. A user the file gives neither keeps what the database has.

ejabberd 23.01 writes the salt and both keys base64-encoded twice (its stored values are
already base64). Keys have a known length per hash, so a key that only has it after a
second decoding marks the whole element as encoded twice; it is decoded accordingly and
the operator is told.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, delete, insert, select, update
from twisted.words.xish.domish import Element

from storage.credentials import Credentials
from storage.schema import accounts, credentials
from xmppd import stanza as st
from xmppd.accounts import SCRAM_HASHES, check_password, derive
from xmppd.pie.model import SCRAM, XMPPD, PieError, Report, Where
from xmppd.pie.xml import parse_stamp, stamp

KEY_BYTES: Final = {"SCRAM-SHA-1": 20, "SCRAM-SHA-256": 32, "SCRAM-SHA-512": 64}
MAX_ITERATIONS: Final = 10_000_000  # beyond this every login would take seconds of CPU
PARTS: Final = ("iter-count", "salt", "server-key", "stored-key")
MECHANISM: Final = 32  # the credentials table's mechanism column


@dataclass
class UserCtx:
    host: str
    name: str
    where: Where
    password: str | None = None
    scram: dict[str, Credentials] = field(default_factory=dict)
    roster_changed: bool = False
    roster_ver: int | None = None


def open_user(conn: Connection, host: str, name: str, attrs: Mapping[Any, str],
              where: Where, report: Report) -> UserCtx:
    """Create the account if it does not exist yet (with the file's creation time)."""
    created_attr = attrs.get((XMPPD, "created"))
    created = (parse_stamp(created_attr, where, "created") // 1_000_000 if created_attr
               else int(time.time()))
    found = conn.execute(select(accounts.c.username).where(
        accounts.c.host == host, accounts.c.username == name)).first()
    # xmppd's own account state (XEP-0133 disable-user, the last login) rides along in its
    # namespace: a restore must not quietly re-enable an account an admin disabled.
    state: dict[str, int] = {}
    if attrs.get((XMPPD, "disabled")) == "true":
        state["disabled"] = 1
    last_login = attrs.get((XMPPD, "last-login"))
    if last_login:
        state["last_login"] = parse_stamp(last_login, where, "last-login") // 1_000_000
    if found is None:
        conn.execute(insert(accounts).values(host=host, username=name, created=created,
                                             **state))
    elif state:
        conn.execute(update(accounts).where(accounts.c.host == host,
                                            accounts.c.username == name).values(**state))
    report.count("accounts", found is None)
    ctx = UserCtx(host, name, where)
    password = attrs.get("password")
    if password is not None:
        if not password:
            raise PieError(where, f"user {name}: empty password")
        ctx.password = password
    return ctx


def _b64(value: str, where: Where, what: str) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise PieError(where, f"<scram-credentials/>: {what} is not base64") from None


def scram_unit(ctx: UserCtx, el: Element, where: Where, report: Report) -> None:
    """One ``<scram-credentials/>`` (XEP-0227 "SCRAM credentials": one of each child, one
    element per mechanism, the mechanism named without -PLUS)."""
    mech = (el.getAttribute("mechanism") or "").upper()
    if not mech.startswith("SCRAM-") or mech.endswith("-PLUS") or len(mech) > MECHANISM:
        raise PieError(where, f"<scram-credentials/>: mechanism {mech or '(none)'!r} is not "
                       "a SCRAM mechanism name without -PLUS")
    if mech in ctx.scram:
        raise PieError(where, f"<scram-credentials/>: {mech} given twice for {ctx.name}")
    values: dict[str, str] = {}
    for child in st.element_children(el):
        if child.uri != SCRAM or child.name not in PARTS or child.name in values:
            raise PieError(where, f"<scram-credentials/>: unexpected or repeated "
                           f"<{child.name}/>")
        values[child.name] = st.text(child).strip()
    missing = [p for p in PARTS if not values.get(p)]
    if missing:
        raise PieError(where, f"<scram-credentials/>: missing <{missing[0]}/>")
    if not values["iter-count"].isdigit() or not (
            1 <= int(values["iter-count"]) <= MAX_ITERATIONS):
        raise PieError(where, f"<iter-count/> {values['iter-count']!r} is not a count from 1 "
                       f"to {MAX_ITERATIONS}")
    salt = _b64(values["salt"], where, "salt")
    server = _b64(values["server-key"], where, "server-key")
    stored = _b64(values["stored-key"], where, "stored-key")
    size = KEY_BYTES.get(mech)
    if size is not None and (len(server), len(stored)) != (size, size):
        try:
            twice = [base64.b64decode(x, validate=True) for x in (salt, server, stored)]
        except (binascii.Error, ValueError):
            twice = []
        if not twice or (len(twice[1]), len(twice[2])) != (size, size):
            raise PieError(where, f"<scram-credentials/>: {mech} keys must be {size} bytes")
        salt, server, stored = twice
        report.note(where, f"{mech} credentials of {ctx.name}@{ctx.host} were base64-encoded "
                    "twice (as ejabberd 23.01 writes them); decoded accordingly")
    if not salt:
        raise PieError(where, "<scram-credentials/>: empty salt")
    if size is None or mech not in SCRAM_HASHES:
        report.note(where, f"{ctx.name}@{ctx.host}: {mech} credentials kept, but xmppd "
                    f"offers {' and '.join(SCRAM_HASHES)} only")
    ctx.scram[mech] = Credentials(mech, salt, int(values["iter-count"]), stored, server)


def _stored(conn: Connection, host: str, name: str) -> dict[str, Credentials]:
    rows = conn.execute(select(credentials).where(
        credentials.c.host == host, credentials.c.username == name))
    return {r.mechanism: Credentials(r.mechanism, bytes(r.salt), int(r.iterations),
                                     bytes(r.stored_key), bytes(r.server_key)) for r in rows}


def close_user(conn: Connection, ctx: UserCtx, iterations: int, report: Report) -> str | None:
    """Settle the user's credentials; returns a warning kind for the summary ("sha1-only",
    "no-credentials") or None."""
    existing = _stored(conn, ctx.host, ctx.name)
    wanted: dict[str, Credentials]
    if ctx.scram:
        wanted = dict(ctx.scram)
        if ctx.password is not None:
            for c in derive(ctx.password, iterations):
                wanted.setdefault(c.mechanism, c)
    elif ctx.password is not None:
        usable = [existing[m] for m in SCRAM_HASHES if m in existing]
        if len(usable) == len(SCRAM_HASHES) and all(
                check_password(ctx.password, c) for c in usable):
            wanted = existing  # the same password: keep the verifiers (and their salts)
        else:
            try:
                wanted = {c.mechanism: c for c in derive(ctx.password, iterations)}
            except ValueError as exc:
                raise PieError(ctx.where, f"password of {ctx.name}: {exc}") from None
    else:
        wanted = existing
    changed = wanted != existing
    if changed:
        conn.execute(delete(credentials).where(credentials.c.host == ctx.host,
                                               credentials.c.username == ctx.name))
        for c in sorted(wanted.values(), key=lambda c: c.mechanism):
            conn.execute(insert(credentials).values(
                host=ctx.host, username=ctx.name, mechanism=c.mechanism, salt=c.salt,
                iterations=c.iterations, stored_key=c.stored_key, server_key=c.server_key))
    report.count("credentials", changed)
    if not wanted:
        return "no-credentials"
    if "SCRAM-SHA-256" not in wanted and "SCRAM-SHA-1" in wanted:
        return "sha1-only"
    return None


def export_user(conn: Connection, host: str, name: str, created: int, disabled: bool = False,
                last_login: int | None = None) -> tuple[dict[str, str], list[Element]]:
    """The ``<user/>`` attributes and its ``<scram-credentials/>`` (never a password: xmppd
    does not have it, and XEP-0227 1.1 advises against writing one)."""
    attrs = {"name": name, "xmlns:x": XMPPD, "x:created": stamp(created * 1_000_000)}
    if disabled:
        attrs["x:disabled"] = "true"
    if last_login is not None:
        attrs["x:last-login"] = stamp(last_login * 1_000_000)
    out = []
    for mech, c in sorted(_stored(conn, host, name).items()):
        el = st.make("scram-credentials", SCRAM, {"mechanism": mech})
        st.add(el, "iter-count", SCRAM, str(c.iterations))
        st.add(el, "salt", SCRAM, base64.b64encode(c.salt).decode())
        st.add(el, "server-key", SCRAM, base64.b64encode(c.server_key).decode())
        st.add(el, "stored-key", SCRAM, base64.b64encode(c.stored_key).decode())
        out.append(el)
    return attrs, out
