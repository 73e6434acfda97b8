"""Page templates (package data) and a tiny escaping renderer for them.

The HTML, CSS and JavaScript of every page live beside this module as files, edited and linted
as what they are: the path browser (``report.html``, ``report.css``, ``report.js``, and fragments
like ``heatmap.html``), the gallery (``gallery.html``, ``gallery.css``, ``gallery.js``) and the
audit (``audit.html``, ``audit.css``, ``audit_card.html``, ``audit_curve.html``). No Python file
holds page text (tests/test_packaging.py checks). Templates use :class:`string.Template`
placeholders (``$name``); every value is HTML-escaped when it is inserted unless it is
:class:`Html` (markup this package built, or escaped already), so text from a result (class
names, titles, settings) can never become markup by accident::

    render("heatmap.html", label=label, image=Html(uri_markup))   # a file, escaped values
    element("td", value, class_="num")                            # one element, escaped
"""

from __future__ import annotations

import base64
import hashlib
import html
import string
from collections.abc import Iterable, Mapping
from importlib import resources

__all__ = [
    "Html",
    "content_security_policy",
    "element",
    "escape",
    "inline",
    "join",
    "placeholders",
    "render",
    "template_text",
]


class Html(str):
    """Text that is already safe HTML (built by :func:`element` / :func:`render`, or escaped)."""

    __slots__ = ()


def escape(value: object) -> Html:
    """``value`` as HTML text: :class:`Html` unchanged, anything else ``str()``-ed and escaped
    (``<``, ``>``, ``&``, both quotes)."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Html:
    """Concatenate escaped ``parts``."""
    return Html(sep.join(escape(p) for p in parts))


def _attribute(name: str, value: object) -> str:
    key = name.rstrip("_").replace("_", "-")
    if value is True:
        return f" {key}"
    return f' {key}="{escape(value)}"'


def element(tag: str, *children: object, void: bool = False, **attrs: object) -> Html:
    """One element: ``element("td", "a < b", class_="num")`` -> ``<td class="num">a &lt; b</td>``.

    Attribute names drop a trailing ``_`` and turn ``_`` into ``-`` (``data_t`` -> ``data-t``);
    ``None`` and ``False`` attributes are left out, ``True`` ones written bare. ``void``
    elements (``img``, ``line``) are self-closed and take no children.
    """
    attributes = "".join(
        _attribute(k, v) for k, v in attrs.items() if v is not None and v is not False
    )
    if void:
        if children:
            raise ValueError(f"<{tag}> is void and takes no children")
        return Html(f"<{tag}{attributes}/>")
    return Html(f"<{tag}{attributes}>{join(children)}</{tag}>")


def template_text(name: str) -> str:
    """The text of the template file ``name`` (package data beside this module)."""
    source = resources.files(__name__).joinpath(name)
    if not source.is_file():
        raise FileNotFoundError(f"no template {name!r} in package {__name__}")
    return source.read_text(encoding="utf-8")


def placeholders(text: str) -> set[str]:
    """The placeholder names of a :class:`string.Template` text."""
    names = set()
    for match in string.Template.pattern.finditer(text):
        if match.group("invalid") is not None:
            raise ValueError(f"invalid placeholder at offset {match.start()}: {text[:80]!r}...")
        name = match.group("named") or match.group("braced")
        if name:
            names.add(name)
    return names


def render(name: str, values: Mapping[str, object] | None = None, **more: object) -> Html:
    """Fill the template file ``name``: every value escaped unless :class:`Html`.

    Raises:
        KeyError: a placeholder has no value, or a value has no placeholder (a typo either way).
    """
    text = template_text(name)
    given = {**(values or {}), **more}
    wanted = placeholders(text)
    if wanted != set(given):
        missing, unused = sorted(wanted - set(given)), sorted(set(given) - wanted)
        raise KeyError(f"template {name!r}: no value for {missing}, no placeholder for {unused}")
    return Html(string.Template(text).substitute({k: escape(v) for k, v in given.items()}))


_CLOSING = {".css": "</style", ".js": "</script"}


def inline(name: str) -> Html:
    """A ``.css`` / ``.js`` template file's text for a ``<style>`` / ``<script>`` element.

    Raises:
        ValueError: the text would close its element early.
    """
    text = template_text(name)
    closing = _CLOSING[name[name.rfind(".") :]]
    if closing in text.lower():
        raise ValueError(f"template {name!r} contains {closing!r}")
    return Html(text)


def content_security_policy(script: str | None = None) -> Html:
    """No network, images from data URIs only, inline styles, and only ``script`` may run (by
    its SHA-256 hash; ``None``: no script at all). Fixed text and a base64 digest: nothing to
    escape (its single quotes stay readable)."""
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    if script is not None:
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
        policy += f"script-src 'sha256-{digest}'; "
    return Html(policy + "base-uri 'none'; form-action 'none'")
