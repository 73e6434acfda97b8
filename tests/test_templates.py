"""The escaping renderer of the report templates (:mod:`ablation_paths.templates`).

The expected strings are written out by hand (the HTML escapes of ``< > & " '``), not computed
with :func:`html.escape`, so a renderer that escapes too little, too much or not at all fails.
"""

from __future__ import annotations

import string

import pytest

from ablation_paths.templates import Html, element, escape, join, placeholders, render

HOSTILE = """<a href="x" title='y'>&amp;</a>"""
HOSTILE_ESCAPED = "&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;&amp;amp;&lt;/a&gt;"


def test_escape_every_special_character_and_keeps_html() -> None:
    assert escape(HOSTILE) == HOSTILE_ESCAPED
    assert isinstance(escape(HOSTILE), Html)
    assert escape(3.5) == "3.5"  # str() of a non-string
    safe = Html("<b>built here</b>")
    assert escape(safe) == "<b>built here</b>"  # Html is not escaped twice


def test_join_escapes_each_part_with_the_separator() -> None:
    assert join(["<", Html("<i>"), "&"]) == "&lt;<i>&amp;"
    assert join(["a", "b", "c"], sep=", ") == "a, b, c"
    assert isinstance(join([]), Html) and join([]) == ""


def test_element_attributes_children_and_void() -> None:
    assert element("td", "a < b", class_="num") == '<td class="num">a &lt; b</td>'
    assert element("td") == "<td></td>"
    # trailing _ dropped, inner _ -> -, values escaped, None / False left out, True bare
    got = element("g", data_t='1"2', hidden=True, skip=None, off=False, for_="x")
    assert got == '<g data-t="1&quot;2" hidden for="x"></g>'
    assert element("img", void=True, src="a&b") == '<img src="a&amp;b"/>'
    assert element("p", "x", Html("<br/>"), 2) == "<p>x<br/>2</p>"
    with pytest.raises(ValueError, match="void"):
        element("img", "child", void=True)


def test_placeholders_named_braced_and_escaped_dollar() -> None:
    assert placeholders("$a and ${b} cost $$5, $a again") == {"a", "b"}
    assert placeholders("no placeholders") == set()
    with pytest.raises(ValueError, match="invalid placeholder"):
        placeholders("a lone $ sign")


def test_render_escapes_values_unless_html() -> None:
    values = {
        "css_class": "c",
        "kind": HOSTILE,
        "window": "false",
        "reference": "r",
        "image": Html("data:image/png;base64,AAAA"),
        "title": "<T>",
        "mark": "",
        "description": "d & e",
        "colorbar": "cb",
        "low": "0",
    }
    page = render("heatmap.html", values, high="1")
    expected = string.Template(
        open_template("heatmap.html")  # the file itself, filled by hand-escaped values
    ).substitute(
        {**values, "kind": HOSTILE_ESCAPED, "title": "&lt;T&gt;", "description": "d &amp; e"},
        high="1",
    )
    assert page == expected
    assert isinstance(page, Html)
    assert HOSTILE not in page
    with pytest.raises(KeyError, match="no value for \\['high'\\]"):
        render("heatmap.html", values)
    with pytest.raises(KeyError, match="no placeholder for \\['typo'\\]"):
        render("heatmap.html", values, high="1", typo="x")


def open_template(name: str) -> str:
    from importlib import resources

    return resources.files("ablation_paths.templates").joinpath(name).read_text(encoding="utf-8")


def test_attribute_names_keep_their_case() -> None:
    """Only a trailing ``_`` is dropped: SVG's ``refX`` keeps its final ``X``."""
    assert element("marker", void=True, refX=3, class_="m") == '<marker refX="3" class="m"/>'


def test_inline_picks_the_closing_tag_by_the_last_suffix_in_any_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ablation_paths.templates as templates

    files = {"a.min.css": "p { color: red }", "b.css": "x </STYLE> y", "c.js": "'</Script>'"}
    monkeypatch.setattr(templates, "template_text", lambda name: files[name])
    assert templates.inline("a.min.css") == "p { color: red }"
    with pytest.raises(ValueError, match="</style"):
        templates.inline("b.css")
    with pytest.raises(ValueError, match="</script"):
        templates.inline("c.js")


def test_content_security_policy_text() -> None:
    import base64
    import hashlib

    from ablation_paths.templates import content_security_policy

    base = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    end = "base-uri 'none'; form-action 'none'"
    assert content_security_policy() == base + end
    script = "let a = '\u00e9';"  # the hash is over the UTF-8 bytes
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    assert content_security_policy(script) == f"{base}script-src 'sha256-{digest}'; {end}"


def test_templates_are_read_as_utf8_whatever_the_locale() -> None:
    """``report.html`` holds non-ASCII text (arrows, the play sign); under an ASCII locale
    (no UTF-8 mode, no locale coercion) it must still be read as UTF-8."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import ablation_paths.templates as templates

    want = (Path(templates.__file__).parent / "report.html").read_bytes().decode("utf-8")
    assert any(ord(c) > 127 for c in want)
    # also read here, so that mutmut (which picks tests by the functions they call) runs it
    assert templates.template_text("report.html") == want
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    env["PYTHONCOERCECLOCALE"] = "0"
    env["PYTHONPATH"] = str(Path(templates.__file__).parents[2])  # this very package
    code = (
        "import sys, locale; from ablation_paths.templates import template_text; "
        "assert locale.getpreferredencoding(False).lower() != 'utf-8', 'locale is UTF-8'; "
        "sys.stdout.buffer.write(template_text('report.html').encode('utf-8'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode("utf-8") == want
