"""The stylesheet's themes: both follow the system, both can be forced, and every text
colour is readable (WCAG contrast at least 4.5:1) on every background it is used on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = (Path(__file__).parents[2] / "app" / "ui" / "static" / "ui.css").read_text()
TEXT = ("fg", "muted", "link", "ok", "bad", "warn", "crash", "run", "idle")
BACKGROUNDS = ("bg", "panel", "alert-bg", "notice-bg")
STATUS_FILLS = ("ok", "bad", "warn", "crash", "run", "idle")


def block(selector: str) -> dict[str, str]:
    """The custom properties set in the first rule whose selector is ``selector``."""
    start = CSS.index(selector + " {")
    body = CSS[start : CSS.index("}", start)]
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", body))


def luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


THEMES = {
    "light": block(":root"),
    "dark (system)": block(':root:not([data-theme="light"])'),
    "dark (forced)": block('html[data-theme="dark"]'),
}


def test_the_dark_theme_is_the_same_whether_chosen_by_the_system_or_the_switch() -> None:
    assert THEMES["dark (system)"] == THEMES["dark (forced)"]
    assert "@media (prefers-color-scheme: dark)" in CSS
    assert set(THEMES["light"]) == set(THEMES["dark (forced)"])


@pytest.mark.parametrize("theme", ["light", "dark (forced)"])
def test_every_text_colour_reads_on_every_background(theme: str) -> None:
    colours = THEMES[theme]
    for text in TEXT:
        for background in BACKGROUNDS:
            ratio = contrast(colours[text], colours[background])
            assert ratio >= 4.5, f"{theme}: {text} on {background} is {ratio:.2f}:1"
    for fill in STATUS_FILLS:
        ratio = contrast(colours["on-status"], colours[fill])
        assert ratio >= 4.5, f"{theme}: a strip letter on {fill} is {ratio:.2f}:1"


def test_the_care_rules_are_there() -> None:
    for rule in (
        ":focus-visible",
        ".visually-hidden",
        ".skip:focus",
        "@media (prefers-reduced-motion: reduce)",
        ".table-wrap { overflow-x: auto",
    ):
        assert rule in CSS, rule
