"""Roles (XEP-0045 §5.1): the default role of a new occupant, privileges, and who may change
whose role. Pure functions over strings, tested on their own (tests/unit/test_muc_roles.py).
"""

from __future__ import annotations

from typing import Final

from plugins.muc.affiliations import ADMIN, MEMBER, NONE, OWNER, rank

MODERATOR: Final = "moderator"
PARTICIPANT: Final = "participant"
VISITOR: Final = "visitor"
ROLE_NONE: Final = "none"
ROLES: Final = (MODERATOR, PARTICIPANT, VISITOR, ROLE_NONE)
ROLE_RANK: Final = {ROLE_NONE: 0, VISITOR: 1, PARTICIPANT: 2, MODERATOR: 3}


def default_role(affiliation: str, moderated: bool) -> str:
    """§5.1.2 "Initial Role Based on Affiliation": owners and admins are moderators, members
    participants, others participants (visitors in a moderated room). Outcasts never enter."""
    if affiliation in (OWNER, ADMIN):
        return MODERATOR
    if affiliation == MEMBER:
        return PARTICIPANT
    if affiliation == NONE:
        return VISITOR if moderated else PARTICIPANT
    return ROLE_NONE


def role_after_affiliation_change(old_role: str, old_affiliation: str, new_affiliation: str,
                                  moderated: bool) -> str:
    """The role of an occupant whose affiliation changed (§5.1.3 note): the role that comes
    with an affiliation is granted (admin/owner -> moderator, member -> participant unless
    already moderator); an admin or owner who loses that affiliation gets the default role of
    the new one (§10.2); other losses (member -> none) keep the current role."""
    if new_affiliation in (OWNER, ADMIN):
        return MODERATOR
    if old_affiliation in (OWNER, ADMIN):
        return default_role(new_affiliation, moderated)
    if new_affiliation == MEMBER:
        return MODERATOR if old_role == MODERATOR else PARTICIPANT
    return old_role


def may_speak(role: str) -> bool:
    """§5.1.1 "Send Messages to All": participants and moderators (visitors lack voice)."""
    return role in (PARTICIPANT, MODERATOR)


def may_send_pm(role: str, allow_pm: str) -> bool:
    """§5.1.1 "Send Private Messages", controlled by muc#roomconfig_allowpm."""
    if allow_pm == "anyone":
        return role != ROLE_NONE
    if allow_pm == "participants":
        return role in (PARTICIPANT, MODERATOR)
    if allow_pm == "moderators":
        return role == MODERATOR
    return False


def may_change_subject(role: str, change_subject: bool) -> bool:
    """§8.1: moderators; participants too when muc#roomconfig_changesubject allows it."""
    return role == MODERATOR or (change_subject and role == PARTICIPANT)


def change_error(actor_affiliation: str, actor_role: str, target_affiliation: str,
                 target_role: str, new_role: str) -> str | None:
    """The error condition for a role change (None if allowed):

    * role changes are moderator privileges (§8: ``forbidden`` for anyone else);
    * granting or revoking the moderator role is for admins and owners (§9.6, §9.7,
      §5.1.3 state chart: ``forbidden``);
    * nobody with a lower affiliation kicks or silences someone with a higher one (§8.2,
      §8.4: ``not-allowed``);
    * the voice and moderator role of admins and owners cannot be revoked (§8.4 "a service
      MUST NOT allow the voice privileges of an admin or owner to be removed by anyone",
      §9.7: ``not-allowed``); they can still be kicked by a higher affiliation.
    """
    if new_role not in ROLES:
        return "bad-request"
    if actor_role != MODERATOR:
        return "forbidden"
    if rank(target_affiliation) > rank(actor_affiliation):
        return "not-allowed"
    if new_role in (PARTICIPANT, VISITOR) and target_affiliation in (OWNER, ADMIN):
        return "not-allowed"
    if (new_role == MODERATOR or target_role == MODERATOR) and new_role != ROLE_NONE and (
            rank(actor_affiliation) < rank(ADMIN)):
        return "forbidden"
    return None
