"""Operations as XEP-0004 forms: the form an admin fills in, the submission read back, the
result shown (XEP-0133 §4: FORM_TYPE http://jabber.org/protocol/admin and its field vars)."""

from __future__ import annotations

from twisted.words.xish.domish import Element

from xmppd import forms
from xmppd import stanza as st
from xmppd.admin.accounts import roster_query
from xmppd.ops import Operation, OpError, Result


def request_form(op: Operation, values: dict[str, list[str]]) -> Element:
    form = forms.Form("form", title=op.title)
    if op.instructions:
        form.instructions = [op.instructions]
    form.add("FORM_TYPE", "hidden", op.form_type)
    for p in op.params:
        form.add(p.var, p.type, values.get(p.name), label=p.label, required=p.required,
                 options=[(label, v) for label, v in p.options])
    return form.to_element()


def submitted(op: Operation, form: forms.Form) -> dict[str, list[str]]:
    """The submitted values by parameter name; fields the operation does not know are
    ignored (XEP-0004 §3.2 lets a submission carry them)."""
    form_type = form.form_type
    if form_type is not None and form_type != op.form_type:
        raise OpError("bad-request", f"FORM_TYPE: expected {op.form_type}", "FORM_TYPE")
    by_var = {p.var: p for p in op.params}
    return {by_var[var].name: f.values for var, f in form.fields.items() if var in by_var}


def result_payload(op: Operation, result: Result) -> list[Element]:
    """A result form with the fields (a table as <reported/> and <item/>s, XEP-0004 §3.4);
    nothing when there is nothing but the message."""
    if not result.fields and result.table is None:
        return []
    form = forms.Form("result")
    form.add("FORM_TYPE", "hidden", op.form_type)
    for f in result.fields:
        # A list's values are among its options (XEP-0004 §3.3); clients show the options.
        options = [(None, v) for v in f.values] if f.type.startswith("list-") else []
        form.add(f.var, f.type, f.values, label=f.label or None, options=options)
    x = form.to_element()
    table = result.table
    if table is not None:
        reported = st.add(x, "reported", forms.NS)
        for key, label in table.columns:
            st.add(reported, "field", forms.NS, attrs={"var": key, "label": label})
        for row in table.rows:
            item = st.add(x, "item", forms.NS)
            for key, _label in table.columns:
                field = st.add(item, "field", forms.NS, attrs={"var": key})
                for value in (row.get(key, "").split("\n") if key == "groups"
                              else [row.get(key, "")]):
                    st.add(field, "value", forms.NS, value)
    if op.name == "get-user-roster":  # XEP-0133 §4.8 puts the roster in the form
        for query in roster_query(result):
            st.append(x, query)
    return [x]


def notes(result: Result) -> list[tuple[str, str]]:
    """The message (with a table as text too: not every client shows XEP-0004 tables,
    Profanity's /cmd does not) and the warnings."""
    text = [result.message] if result.message else []
    if result.table is not None and result.table.rows:
        text.extend(result.table.lines())
    out = [("info", "\n".join(text))] if text else []
    return out + [("warn", w) for w in result.warnings]
