"""Room nicknames under the PRECIS Nickname profile (RFC 8266), so that look-alikes conflict.

The router has already prepared the nick as an RFC 7622 resourcepart (OpaqueString), which
keeps case, width and spaces: "alice", "ALICE", "\\uff41lice" (fullwidth a) and " alice " are
four different occupant JIDs. XEP-0045 leaves how conflicts are found to the service (§7.2.9
"How nickname conflicts are determined is up to the implementation"; business rules,
#bizrules-jids: "It is up to the service implementation whether it will further restrict
roomnicks") and lists nick mimicry ("adding a space at the end or substituting visually
similar characters") among the attacks to mitigate (security considerations, #security-dos).
RFC 8266 is the profile for exactly this slot ("nicknames in messaging and text conferencing
technologies"), so the room applies it on top of the resourcepart:

* the nick shown to everyone is the enforced form (RFC 8266 §2.3: additional mapping rule,
  i.e. non-ASCII spaces to SPACE, trimming and collapsing spaces, then NFKC, which also maps
  fullwidth and halfwidth characters; no case mapping: "an entity SHOULD apply the Case
  Mapping Rule only during comparison"; an empty result is refused);
* two nicks conflict when their comparison forms are equal (RFC 8266 §2.4: additional
  mapping, toLowerCase(), NFKC; equal means "exact octet-for-octet match").

precis-i18n's "NicknameCasePreserved" profile is the §2.3 enforcement and "NicknameCaseMapped"
the §2.4 comparison (toLowerCase, RFC 8266 §2.1 rule 3). Both reapply the rules until the
output is stable and refuse strings that do not settle (RFC 8266 §4: "SHOULD apply the rules
repeatedly until the output string is stable").

A room computes a nick's key once, when an occupant enters or changes nick (occupant.key),
never per stanza; ``prepare`` is cached because the same few nicks come back.
"""

from __future__ import annotations

from functools import lru_cache

import precis_i18n

_ENFORCE = precis_i18n.get_profile("NicknameCasePreserved")
_COMPARE = precis_i18n.get_profile("NicknameCaseMapped")


class NickError(ValueError):
    """The string is not a nickname under RFC 8266 (empty after mapping, or disallowed)."""


@lru_cache(maxsize=8192)
def prepare(nick: str) -> tuple[str, str]:
    """(enforced form, comparison key) of a nickname; raises NickError.

    The key is taken from the enforced form, so a stored (already enforced) nick and a
    newly presented one are compared the same way."""
    try:
        shown = _ENFORCE.enforce(nick)
        return shown, _COMPARE.enforce(shown)
    except UnicodeError as exc:
        raise NickError(str(exc)) from None


def key(nick: str) -> str | None:
    """The comparison key of a nick, or None if it is not a nickname at all (a reservation
    stored before the profile was applied, which can then reserve nothing)."""
    try:
        return prepare(nick)[1]
    except NickError:
        return None
