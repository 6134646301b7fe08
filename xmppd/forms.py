"""XEP-0004 Data Forms: parse submitted forms and build forms and results.

Used by every plugin that speaks forms (MAM queries, search, MUC configuration,
registration), so field typing and validation errors are the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.errors import StanzaError

NS = "jabber:x:data"
FORM_TYPES = frozenset(("form", "submit", "cancel", "result"))
FIELD_TYPES = frozenset((
    "boolean", "fixed", "hidden", "jid-multi", "jid-single", "list-multi", "list-single",
    "text-multi", "text-private", "text-single"))


@dataclass
class Field:
    var: str
    type: str | None = None
    label: str | None = None
    values: list[str] = field(default_factory=list)
    options: list[tuple[str | None, str]] = field(default_factory=list)  # (label, value)
    required: bool = False
    desc: str | None = None

    @property
    def value(self) -> str | None:
        return self.values[0] if self.values else None

    def boolean(self) -> bool:
        """XEP-0004 §3.3: boolean values are 0/1/false/true."""
        v = (self.value or "").strip()
        if v in ("1", "true"):
            return True
        if v in ("0", "false", ""):
            return False
        raise StanzaError("bad-request", text=f"field {self.var}: not a boolean")


@dataclass
class Form:
    type: str = "form"
    fields: dict[str, Field] = field(default_factory=dict)
    title: str | None = None
    instructions: list[str] = field(default_factory=list)

    @property
    def form_type(self) -> str | None:
        f = self.fields.get("FORM_TYPE")
        return f.value if f is not None else None

    def value(self, var: str) -> str | None:
        f = self.fields.get(var)
        return f.value if f is not None else None

    def add(self, var: str, type_: str | None = None, value: str | list[str] | None = None,
            label: str | None = None, **kw: object) -> Field:
        values = [] if value is None else [value] if isinstance(value, str) else list(value)
        f = Field(var, type_, label, values, **kw)  # type: ignore[arg-type]
        self.fields[var] = f
        return f

    @classmethod
    def parse(cls, el: Element) -> Form:
        """Parse an <x xmlns='jabber:x:data'/>; malformed forms are bad-request."""
        ftype = el.getAttribute("type", "")
        if ftype not in FORM_TYPES:
            raise StanzaError("bad-request", text="data form type missing or invalid")
        form = cls(ftype)
        title = st.child(el, "title", NS)
        form.title = st.text(title) if title is not None else None
        form.instructions = [st.text(i) for i in st.children(el, "instructions", NS)]
        for f in st.children(el, "field", NS):
            var = f.getAttribute("var")
            ftype_ = f.getAttribute("type")
            if ftype_ is not None and ftype_ not in FIELD_TYPES:
                raise StanzaError("bad-request", text=f"unknown field type {ftype_}")
            if not var:
                if ftype_ == "fixed":
                    continue
                raise StanzaError("bad-request", text="a field without 'var'")
            if var in form.fields:
                raise StanzaError("bad-request", text=f"field {var} given twice")
            values = [st.text(v) for v in st.children(f, "value", NS)]
            if ftype_ in ("boolean", "hidden", "jid-single", "list-single", "text-private",
                          "text-single", "fixed") and len(values) > 1:
                raise StanzaError("bad-request", text=f"field {var} takes one value")
            form.fields[var] = Field(var, ftype_, f.getAttribute("label"), values,
                                     required=st.child(f, "required", NS) is not None)
        return form

    def to_element(self) -> Element:
        x = st.make("x", NS, {"type": self.type})
        if self.title:
            st.add(x, "title", NS, self.title)
        for text in self.instructions:
            st.add(x, "instructions", NS, text)
        for f in self.fields.values():
            attrs = {"var": f.var}
            if f.type:
                attrs["type"] = f.type
            if f.label:
                attrs["label"] = f.label
            fe = st.add(x, "field", NS, attrs=attrs)
            if f.desc:
                st.add(fe, "desc", NS, f.desc)
            if f.required:
                st.add(fe, "required", NS)
            for v in f.values:
                st.add(fe, "value", NS, v)
            for label, v in f.options:
                opt = st.add(fe, "option", NS, attrs={"label": label} if label else None)
                st.add(opt, "value", NS, v)
        return x


def find(parent: Element, form_type: str | None = None) -> Form | None:
    """The first data form child (with the given FORM_TYPE, if any)."""
    for x in st.children(parent, "x", NS):
        form = Form.parse(x)
        if form_type is None or form.form_type == form_type:
            return form
    return None
