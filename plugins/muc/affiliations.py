"""Affiliations (XEP-0045 §5.2): their order and who may change whose affiliation.

Pure functions over strings so that the permission tables can be tested on their own; the
muc#admin handler (admin.py) applies them and raises the StanzaError they name.
"""

from __future__ import annotations

from typing import Final

OWNER: Final = "owner"
ADMIN: Final = "admin"
MEMBER: Final = "member"
NONE: Final = "none"
OUTCAST: Final = "outcast"
AFFILIATIONS: Final = (OWNER, ADMIN, MEMBER, NONE, OUTCAST)
RANK: Final = {OUTCAST: -1, NONE: 0, MEMBER: 1, ADMIN: 2, OWNER: 3}


def rank(affiliation: str) -> int:
    return RANK[affiliation]


def change_error(actor: str, target: str, new: str, self_change: bool) -> str | None:
    """The error condition for ``actor`` changing ``target``'s affiliation to ``new`` (None if
    allowed), per the §5.2.1 privilege table and §5.2.2 state chart:

    * only admins and owners edit affiliations at all (§9: ``forbidden`` otherwise);
    * granting or revoking owner and admin is the owners' privilege (§10.3-10.8, "If a
      non-owner attempts to modify the owner/admin list ... forbidden");
    * an admin cannot ban or otherwise demote an owner or another admin (§9.1 "a user cannot
      be banned by an admin with a lower affiliation": ``not-allowed``);
    * nobody bans themselves (§9.1: ``conflict``).

    The last-owner rule (§10.6: an owner may not give up ownership when there is no other
    owner, ``conflict``) needs the whole list and is checked by the caller.
    """
    if rank(actor) < RANK[ADMIN]:
        return "forbidden"
    if new not in AFFILIATIONS:
        return "bad-request"
    if self_change and new == OUTCAST:
        return "conflict"
    if actor != OWNER:
        if new in (OWNER, ADMIN):
            return "forbidden"
        if target in (OWNER, ADMIN) and not self_change:
            return "not-allowed"
    return None


def may_get_list(affiliation: str, requester: str, requester_role: str,
                 non_anonymous: bool, member_list_roles: frozenset[str]) -> bool:
    """Who may retrieve an affiliation list (§9.2, §9.5, §10.5, §10.8; version 1.35):

    * outcast list: admins and owners;
    * member list: admins and owners; occupants whose role the room allows
      (muc#roomconfig_getmemberlist), in semi-anonymous rooms only moderators (§5.2.1 note
      ***: the list carries real JIDs); in non-anonymous rooms also any member (§9.5);
    * admin and owner lists: owners; in non-anonymous rooms anyone affiliated or present
      ("the service MAY process the request").
    """
    if rank(requester) >= RANK[ADMIN] and affiliation in (OUTCAST, MEMBER, NONE):
        return True
    if affiliation == MEMBER:
        if non_anonymous and requester == MEMBER:
            return True
        if requester_role in member_list_roles:
            return non_anonymous or requester_role == "moderator"
        return False
    if affiliation in (ADMIN, OWNER):
        if requester == OWNER:
            return True
        return non_anonymous and (requester != OUTCAST) and (
            requester != NONE or requester_role != "none")
    return False
