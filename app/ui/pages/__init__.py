"""Dashboard page handlers, one module per page."""

from __future__ import annotations

from typing import Any

from app.ui.pages.overview import overview
from app.ui.pages.prefs import set_prefs

PAGE_HANDLERS: list[Any] = [overview, set_prefs]

# Login and logout (issue 11, H1).
from app.ui.pages.login import login, login_form, logout  # noqa: E402

PAGE_HANDLERS += [login_form, login, logout]
