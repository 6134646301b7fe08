"""XEP-0045 permission tables: default roles (§5.1.2), role changes (§8, §9.6-9.7) and
affiliation changes (§9, §10), list access (§9.2, §9.5, §10.5, §10.8)."""

from __future__ import annotations

import pytest

from plugins.muc import affiliations as A
from plugins.muc import roles as R


@pytest.mark.parametrize("affiliation,moderated,role", [
    ("owner", False, "moderator"), ("owner", True, "moderator"),
    ("admin", False, "moderator"), ("admin", True, "moderator"),
    ("member", False, "participant"), ("member", True, "participant"),
    ("none", False, "participant"), ("none", True, "visitor"),
    ("outcast", False, "none"),
])
def test_default_role_table(affiliation: str, moderated: bool, role: str) -> None:
    assert R.default_role(affiliation, moderated) == role


@pytest.mark.parametrize("actor_aff,actor_role,target_aff,target_role,new,error", [
    # kicks (§8.2): moderators kick, not upwards in affiliation
    ("none", "moderator", "none", "participant", "none", None),
    ("admin", "moderator", "member", "participant", "none", None),
    ("member", "moderator", "admin", "moderator", "none", "not-allowed"),
    ("admin", "moderator", "owner", "moderator", "none", "not-allowed"),
    ("owner", "moderator", "admin", "moderator", "none", None),
    ("none", "participant", "none", "participant", "none", "forbidden"),
    ("owner", "none", "none", "participant", "none", "forbidden"),  # not in the room
    # voice (§8.3, §8.4)
    ("none", "moderator", "none", "visitor", "participant", None),
    ("none", "moderator", "none", "participant", "visitor", None),
    ("owner", "moderator", "admin", "moderator", "visitor", "not-allowed"),
    ("member", "moderator", "admin", "moderator", "participant", "not-allowed"),
    ("member", "moderator", "none", "moderator", "participant", "forbidden"),
    # moderator role (§9.6, §9.7): admins and owners only, never from admins/owners
    ("admin", "moderator", "member", "participant", "moderator", None),
    ("none", "moderator", "none", "participant", "moderator", "forbidden"),
    ("admin", "moderator", "none", "moderator", "participant", None),
    ("admin", "moderator", "admin", "moderator", "participant", "not-allowed"),
    ("admin", "moderator", "none", "participant", "chief", "bad-request"),
])
def test_role_changes(actor_aff: str, actor_role: str, target_aff: str, target_role: str,
                      new: str, error: str | None) -> None:
    assert R.change_error(actor_aff, actor_role, target_aff, target_role, new) == error


@pytest.mark.parametrize("actor,target,new,self_change,error", [
    ("admin", "none", "outcast", False, None),  # §9.1 ban
    ("admin", "member", "none", False, None),  # §9.4 revoke membership
    ("admin", "none", "member", False, None),  # §9.3
    ("admin", "owner", "outcast", False, "not-allowed"),  # §9.1 higher affiliation
    ("admin", "admin", "none", False, "not-allowed"),
    ("admin", "none", "admin", False, "forbidden"),  # §10.6 owners edit the admin list
    ("admin", "none", "owner", False, "forbidden"),  # §10.3
    ("owner", "admin", "outcast", False, None),
    ("owner", "none", "owner", False, None),
    ("owner", "owner", "admin", False, None),  # §10.4 (last-owner rule is the caller's)
    ("owner", "owner", "outcast", True, "conflict"),  # §9.1 nobody bans themselves
    ("admin", "admin", "member", True, None),  # stepping down
    ("member", "none", "member", False, "forbidden"),
    ("none", "none", "outcast", False, "forbidden"),
    ("owner", "none", "chief", False, "bad-request"),
])
def test_affiliation_changes(actor: str, target: str, new: str, self_change: bool,
                             error: str | None) -> None:
    assert A.change_error(actor, target, new, self_change) == error


ALL = frozenset(("moderator", "participant", "visitor"))


@pytest.mark.parametrize("wanted,requester,role,non_anon,roles,allowed", [
    ("outcast", "admin", "moderator", False, ALL, True),
    ("outcast", "member", "participant", True, ALL, False),
    ("member", "owner", "none", False, ALL, True),
    ("member", "none", "participant", True, ALL, True),  # getmemberlist roles
    ("member", "none", "participant", False, ALL, False),  # semi-anonymous: moderators
    ("member", "none", "moderator", False, ALL, True),
    ("member", "none", "visitor", True, frozenset({"moderator"}), False),
    ("member", "member", "none", True, frozenset(), True),  # §9.5 non-anonymous members
    ("admin", "owner", "moderator", False, ALL, True),
    ("admin", "admin", "moderator", False, ALL, False),  # §10.8 semi-anonymous: owners
    ("owner", "none", "participant", True, ALL, True),  # non-anonymous: MAY process
    ("owner", "none", "none", True, ALL, False),  # not even present
    ("owner", "outcast", "none", True, ALL, False),
])
def test_list_access(wanted: str, requester: str, role: str, non_anon: bool,
                     roles: frozenset[str], allowed: bool) -> None:
    assert A.may_get_list(wanted, requester, role, non_anon, roles) is allowed


def test_role_after_affiliation_change() -> None:
    f = R.role_after_affiliation_change
    assert f("participant", "none", "admin", False) == "moderator"
    assert f("moderator", "admin", "none", False) == "participant"
    assert f("moderator", "admin", "none", True) == "visitor"
    assert f("visitor", "none", "member", True) == "participant"
    assert f("moderator", "none", "member", False) == "moderator"  # a granted role stays
    assert f("participant", "member", "none", True) == "participant"


def test_privileges() -> None:
    assert R.may_speak("participant") and R.may_speak("moderator")
    assert not R.may_speak("visitor") and not R.may_speak("none")
    assert R.may_send_pm("visitor", "anyone") and not R.may_send_pm("visitor", "participants")
    assert R.may_send_pm("moderator", "moderators") and not R.may_send_pm("moderator", "none")
    assert R.may_change_subject("moderator", False)
    assert not R.may_change_subject("participant", False)
    assert R.may_change_subject("participant", True)
    assert not R.may_change_subject("visitor", True)
