"""The dashboard's template engine is built on the first page, not at startup (idle RSS)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from litestar import Litestar, get
from litestar.response import Template
from litestar.testing import TestClient

from app.ui import template_config
from app.ui.engine import LazyJinjaEngine

REPO = Path(__file__).resolve().parents[2]


@get("/page", sync_to_thread=False)
def a_page() -> Template:
    return Template(template_str="{{ duration_of(3.5) }} {{ name }}", context={"name": "<x>"})


def test_the_serve_path_does_not_import_jinja2() -> None:
    probe = "import sys, app.bootstrap; print('jinja2' in sys.modules)"
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "False"


def test_the_engine_is_built_on_first_render_with_what_was_registered_before() -> None:
    config = template_config()
    app = Litestar(route_handlers=[a_page], template_config=config)
    engine = app.template_engine
    assert isinstance(engine, LazyJinjaEngine)
    assert not engine.built

    def duration_of(context: Any, seconds: float) -> str:
        return f"{seconds} s"

    engine.register_template_callable("duration_of", duration_of)
    assert not engine.built
    with TestClient(app) as client:
        answer = client.get("/page")
    assert engine.built
    assert answer.text == "3.5 s &lt;x&gt;"  # autoescaped, the callable registered


def test_our_filters_are_there_once_built() -> None:
    engine = LazyJinjaEngine(directory=None, engine_instance=None)
    assert engine.render_string("{{ 75.0|duration }}", {}) == "1 m 15 s"
    engine.register_template_callable("late", lambda context: "registered after the build")
    assert engine.render_string("{{ late() }}", {}) == "registered after the build"
