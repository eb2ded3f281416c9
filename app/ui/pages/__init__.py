"""Dashboard page handlers, one module per page."""

from __future__ import annotations

from typing import Any

from app.ui.pages.login import login, login_form, logout
from app.ui.pages.overview import overview
from app.ui.pages.prefs import set_prefs
from app.ui.pages.run import RUN_HANDLERS

PAGE_HANDLERS: list[Any] = [overview, set_prefs, login_form, login, logout, *RUN_HANDLERS]
