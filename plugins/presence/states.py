"""RFC 6121 Appendix A: the subscription state machine as data.

A state is the contact's entry in a user's roster: the subscription (none/to/from/both), a
pending outbound request ('ask') and a pending inbound request. The tables give the state
after each presence subscription stanza, outbound (sent by the user, §A.2) or inbound
(received for the user, §A.3); ``None`` means "no state change".
"""

from __future__ import annotations

from typing import Final, NamedTuple


class State(NamedTuple):
    subscription: str = "none"  # none / to / from / both
    pending_out: bool = False
    pending_in: bool = False

    @property
    def name(self) -> str:
        return _NAMES[self]


NONE: Final = State()
NONE_OUT: Final = State("none", True, False)
NONE_IN: Final = State("none", False, True)
NONE_OUT_IN: Final = State("none", True, True)
TO: Final = State("to")
TO_IN: Final = State("to", False, True)
FROM: Final = State("from")
FROM_OUT: Final = State("from", True, False)
BOTH: Final = State("both")

ALL: Final = (NONE, NONE_OUT, NONE_IN, NONE_OUT_IN, TO, TO_IN, FROM, FROM_OUT, BOTH)
_NAMES: Final = dict(zip(ALL, (
    "None", "None + Pending Out", "None + Pending In", "None + Pending Out+In", "To",
    "To + Pending In", "From", "From + Pending Out", "Both"), strict=True))

_ROWS = (NONE, NONE_OUT, NONE_IN, NONE_OUT_IN, TO, TO_IN, FROM, FROM_OUT, BOTH)


def _table(*results: State | None) -> dict[State, State | None]:
    return dict(zip(_ROWS, results, strict=True))


# §A.2 the user's server, for stanzas the user sends.
OUTBOUND: Final[dict[str, dict[State, State | None]]] = {
    # §A.2.1
    "subscribe": _table(NONE_OUT, None, NONE_OUT_IN, None, None, None, FROM_OUT, None, None),
    # §A.2.2
    "unsubscribe": _table(None, NONE, None, NONE_IN, NONE, NONE_IN, None, FROM, FROM),
    # §A.2.3
    "subscribed": _table(None, None, FROM, FROM_OUT, None, BOTH, None, None, None),
    # §A.2.4
    "unsubscribed": _table(None, None, NONE, NONE_OUT, None, TO, NONE, NONE_OUT, TO),
}

# §A.3 the contact's server, for stanzas the contact receives.
INBOUND: Final[dict[str, dict[State, State | None]]] = {
    # §A.3.1
    "subscribe": _table(NONE_IN, NONE_OUT_IN, None, None, TO_IN, None, None, None, None),
    # §A.3.2
    "unsubscribe": _table(None, None, NONE, NONE_OUT, None, TO, NONE, NONE_OUT, TO),
    # §A.3.3
    "subscribed": _table(None, TO, None, TO_IN, None, None, None, BOTH, None),
    # §A.3.4
    "unsubscribed": _table(None, NONE, None, NONE_IN, NONE, NONE_IN, None, FROM, FROM),
}


def outbound(kind: str, state: State) -> State | None:
    return OUTBOUND[kind][state]


def inbound(kind: str, state: State) -> State | None:
    return INBOUND[kind][state]


def normalise(subscription: str, ask: bool, pending_in: bool) -> State:
    """Map stored flags to one of the nine defined states (ask is meaningless with 'to')."""
    if subscription == "both":
        return BOTH
    if subscription == "to":
        return TO_IN if pending_in else TO
    if subscription == "from":
        return FROM_OUT if ask else FROM
    return State("none", ask, pending_in)
