"""Namespaces, locations, errors and the import report shared by the reader, the importer
and the writer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

PIE: Final = "urn:xmpp:pie:0"  # XEP-0227 1.x
PIE_OLD: Final = "http://www.xmpp.org/extensions/xep-0227.html#ns"  # XEP-0227 0.x
SCRAM: Final = "urn:xmpp:pie:0#scram"
PIE_MAM: Final = "urn:xmpp:pie:0#mam"
XMPPD: Final = "urn:xmppd:pie:0"  # what only xmppd keeps (rooms, blocklists, settings)
XI: Final = "http://www.w3.org/2001/XInclude"
ROSTER: Final = "jabber:iq:roster"
PRIVATE: Final = "jabber:iq:private"
VCARD: Final = "vcard-temp"
PUBSUB: Final = "http://jabber.org/protocol/pubsub"
PUBSUB_OWNER: Final = "http://jabber.org/protocol/pubsub#owner"
MAM: Final = "urn:xmpp:mam:2"
FORWARD: Final = "urn:xmpp:forward:0"
DELAY: Final = "urn:xmpp:delay"
DATA: Final = "jabber:x:data"
BLOCKING: Final = "urn:xmpp:blocking"
MUC_ADMIN: Final = "http://jabber.org/protocol/muc#admin"
CLIENT: Final = "jabber:client"


@dataclass(frozen=True, slots=True)
class Where:
    """A place in an input file, for error messages ("FILE:LINE:COLUMN")."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column + 1}"


class PieError(Exception):
    """The input cannot be imported; the message names where and why. Nothing of the
    import is kept (the transaction is rolled back)."""

    def __init__(self, where: Where | None, message: str) -> None:
        super().__init__(f"{where}: {message}" if where is not None else message)
        self.where = where


ACCOUNT_WARNINGS: Final = {
    "sha1-only": "only have SCRAM-SHA-1 verifiers (as Prosody keeps them): clients that choose "
                 "SCRAM-SHA-256 cannot log them in until each sets a new password, so keep "
                 "SCRAM-SHA-1 offered (auth.mechanisms; clients like Gajim and Conversations "
                 "pick the strongest mechanism offered)",
    "no-credentials": "have neither a password nor SCRAM credentials: they cannot log in "
                      "until `xmppd passwd` sets one",
}


@dataclass
class Report:
    """What an import did: per kind, how many were written (new or changed) and how many
    were already there unchanged; and every note for the operator (elements kept without
    being understood, values that could not be used)."""

    written: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    accounts: dict[str, list[str]] = field(default_factory=dict)  # warning -> JIDs

    def count(self, kind: str, changed: bool, n: int = 1) -> None:
        (self.written if changed else self.unchanged)[kind] += n

    def note(self, where: Where | None, text: str) -> None:
        self.notes.append(f"{where}: {text}" if where is not None else text)

    def warn(self, kind: str, who: str) -> None:
        self.accounts.setdefault(kind, []).append(who)

    def finish(self) -> None:
        """Turn the per-account warnings into one note each (after the last file)."""
        for kind, who in sorted(self.accounts.items()):
            sample = ", ".join(who[:5]) + (" ..." if len(who) > 5 else "")
            self.note(None, f"{len(who)} account(s) {ACCOUNT_WARNINGS[kind]} ({sample})")
        self.accounts.clear()

    def summary(self) -> str:
        kinds = sorted(set(self.written) | set(self.unchanged))
        parts = [f"{k}: {self.written[k]} written, {self.unchanged[k]} unchanged"
                 for k in kinds]
        return "; ".join(parts) if parts else "nothing"
