"""Dashboard page handlers, one module per page."""

from __future__ import annotations

from typing import Any

from app.ui.pages.login import login, login_form, logout
from app.ui.pages.nodes import nodes_page
from app.ui.pages.notifications import notifications_page, retry, send_test
from app.ui.pages.overview import overview
from app.ui.pages.prefs import set_prefs
from app.ui.pages.run import RUN_HANDLERS
from app.ui.pages.runs import bulk, runs_page
from app.ui.pages.task import task_page
from app.ui.pages.tasks import restart, run_now, stop, tasks_page

PAGE_HANDLERS: list[Any] = [
    overview,
    set_prefs,
    login_form,
    login,
    logout,
    tasks_page,
    task_page,
    run_now,
    stop,
    restart,
    runs_page,
    bulk,
    nodes_page,
    notifications_page,
    send_test,
    retry,
    *RUN_HANDLERS,
]
