"""ANSI colours of a log line as escaped HTML: ``<span class="ansi-…">`` and nothing else.

The text is escaped before any markup is added, so a line can never become HTML whatever
it holds. Only SGR sequences (``ESC [ … m``) are understood: foreground 30-37 and 90-97,
background 40-47 and 100-107, bold, and their resets. Every other escape sequence (cursor
moves, OSC titles, 256/true colours, a broken or lone ESC) and every other control
character but the tab are dropped. Colours are classes, never inline styles: the dashboard's
CSP forbids those. ui.js applies the same mapping to live lines, building DOM nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markupsafe import Markup, escape

# CSI: ESC [ parameters intermediates final; OSC: ESC ] … BEL or ESC \ (or the end of the
# line); any other escape: ESC and the character after it, or a lone ESC at the end.
_ESCAPE = re.compile(
    r"\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~])?"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b.?",
    re.DOTALL,
)
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Style:
    """The SGR state that applies to a stretch of text."""

    fg: int | None = None
    """0-7 normal, 8-15 bright; None: the default colour."""
    bg: int | None = None
    bold: bool = False

    def classes(self) -> str:
        """The CSS classes of this state, ``""`` for the default."""
        names = []
        if self.bold:
            names.append("ansi-bold")
        if self.fg is not None:
            names.append(f"ansi-fg-{self.fg}")
        if self.bg is not None:
            names.append(f"ansi-bg-{self.bg}")
        return " ".join(names)


def apply_sgr(style: Style, params: str) -> Style:
    """``style`` after the SGR parameters ``params`` (``"1;31"``; ``""`` means reset)."""
    codes = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else [0]
    fg, bg, bold = style.fg, style.bg, style.bold
    i = 0
    while i < len(codes):
        code = codes[i]
        if code == 0:
            fg, bg, bold = None, None, False
        elif code == 1:
            bold = True
        elif code == 22:
            bold = False
        elif 30 <= code <= 37:
            fg = code - 30
        elif 90 <= code <= 97:
            fg = code - 90 + 8
        elif code == 39:
            fg = None
        elif 40 <= code <= 47:
            bg = code - 40
        elif 100 <= code <= 107:
            bg = code - 100 + 8
        elif code == 49:
            bg = None
        elif code in (38, 48):
            # 256 colours (5;n) or true colour (2;r;g;b): not shown, but their arguments
            # must not be read as codes of their own.
            kind = codes[i + 1] if i + 1 < len(codes) else None
            i += 2 if kind == 5 else 4 if kind == 2 else 1
            continue
        i += 1
    return Style(fg, bg, bold)


def _clean(text: str) -> str:
    return _CONTROLS.sub("", text)


def ansi_to_html(text: str) -> Markup:
    """The line as safe HTML with its SGR colours as classes."""
    if "\x1b" not in text:
        return escape(_clean(text))
    parts: list[str] = []
    style = Style()

    def emit(chunk: str) -> None:
        chunk = _clean(chunk)
        if not chunk:
            return
        classes = style.classes()
        body = str(escape(chunk))
        parts.append(f'<span class="{classes}">{body}</span>' if classes else body)

    last = 0
    for match in _ESCAPE.finditer(text):
        emit(text[last : match.start()])
        last = match.end()
        if match.group("final") == "m":
            style = apply_sgr(style, match.group("params"))
    emit(text[last:])
    return Markup("".join(parts))
