"""The log viewer's ANSI converter: escaped text, SGR colours as classes, nothing else."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.ui.ansi import Style, ansi_to_html, apply_sgr


def test_plain_text_is_escaped() -> None:
    assert ansi_to_html("a < b && c > 'd' \"e\"") == (
        "a &lt; b &amp;&amp; c &gt; &#39;d&#39; &#34;e&#34;"
    )


def test_a_script_stays_text_even_inside_a_colour() -> None:
    out = str(ansi_to_html("\x1b[31m<script>alert(1)</script>\x1b[0m<img src=x onerror=y>"))
    assert out == (
        '<span class="ansi-fg-1">&lt;script&gt;alert(1)&lt;/script&gt;</span>'
        "&lt;img src=x onerror=y&gt;"
    )


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("\x1b[32mok\x1b[0m done", '<span class="ansi-fg-2">ok</span> done'),
        ("\x1b[1;91mBAD\x1b[m", '<span class="ansi-bold ansi-fg-9">BAD</span>'),
        (
            "\x1b[44;37mx\x1b[49my",
            '<span class="ansi-fg-7 ansi-bg-4">x</span><span class="ansi-fg-7">y</span>',
        ),
        ("\x1b[1mb\x1b[22mn", '<span class="ansi-bold">b</span>n'),
        ("\x1b[97;100mw\x1b[39;49m.", '<span class="ansi-fg-15 ansi-bg-8">w</span>.'),
        ("\x1b[31ma\x1b[mb", '<span class="ansi-fg-1">a</span>b'),
    ],
)
def test_sgr_codes_become_classes(text: str, html: str) -> None:
    assert ansi_to_html(text) == html


def test_extended_colours_are_skipped_with_their_arguments() -> None:
    # 38;5;1 must not be read as "38, then 5 (blink), then 1 (bold)".
    assert ansi_to_html("\x1b[38;5;196;4mx") == "x"
    assert ansi_to_html("\x1b[48;2;1;2;3;32mx") == '<span class="ansi-fg-2">x</span>'
    assert apply_sgr(Style(), "38;5") == Style()


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("\x1b[2K\rprogress 50%", "progress 50%"),  # erase line, carriage return
        ("\x1b]0;window title\x07after", "after"),  # OSC title
        ("\x1b]8;;http://x\x1b\\link", "link"),  # OSC 8 hyperlink opener
        ("broken \x1b[31", "broken "),  # cut short at the end of the line
        ("lone \x1b", "lone "),
        ("\x1bcreset", "reset"),  # ESC c
        ("bell\x07 nul\x00 del\x7f tab\tok", "bell nul del tab\tok"),
        ("\ufffd replaced invalid utf-8", "\ufffd replaced invalid utf-8"),
    ],
)
def test_other_escapes_and_controls_are_dropped(text: str, plain: str) -> None:
    assert ansi_to_html(text) == plain


@given(st.text(alphabet=st.sampled_from("<>&\"'\x1b[];0123456789m;abc \x07\\")))
def test_no_input_yields_markup_other_than_our_spans(text: str) -> None:
    out = str(ansi_to_html(text))
    without_spans = re.sub(r'<span class="(ansi-[a-z]+(-\d+)?( |(?="))?)+">|</span>', "", out)
    assert "<" not in without_spans
    assert ">" not in without_spans
    assert "\x1b" not in out
