"""The dashboard's template engine, built on the first page rendered.

Litestar builds its template engine when the app is made; Jinja2 and our filters then sit
in the daemon's memory from the start, also in daemons nobody looks at through a browser
(idle RSS is a target of issue 14). :class:`LazyJinjaEngine` keeps what Litestar registers
and builds the real :class:`~litestar.plugins.jinja.JinjaTemplateEngine` when a page is
first rendered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar.template.base import TemplateEngineProtocol

if TYPE_CHECKING:
    from jinja2 import Template as JinjaTemplate
    from litestar.plugins.jinja import JinjaTemplateEngine


class LazyJinjaEngine(TemplateEngineProtocol["JinjaTemplate", Mapping[str, Any]]):
    """A Jinja2 engine for ``directory`` that imports and builds itself on first use."""

    def __init__(self, directory: Path | list[Path] | None, engine_instance: Any | None) -> None:
        self.directory = directory
        self._callables: list[tuple[str, Callable[..., Any]]] = []
        self._engine: JinjaTemplateEngine | None = None
        self._building = threading.Lock()

    def _real(self) -> JinjaTemplateEngine:
        engine = self._engine
        if engine is None:
            with self._building:  # templates may be rendered in threads
                if self._engine is None:
                    self._engine = self._build()
                engine = self._engine
        return engine

    def _build(self) -> JinjaTemplateEngine:
        from jinja2 import Environment
        from litestar.plugins.jinja import JinjaTemplateEngine

        from app.ui.filters import register

        engine = (
            JinjaTemplateEngine(directory=self.directory)
            if self.directory
            else JinjaTemplateEngine(engine_instance=Environment(autoescape=True))
        )
        for key, template_callable in self._callables:
            engine.register_template_callable(key, template_callable)
        register(engine.engine)
        return engine

    @property
    def built(self) -> bool:
        """Whether a page was rendered yet (Jinja2 imported)."""
        return self._engine is not None

    def get_template(self, template_name: str) -> JinjaTemplate:
        return self._real().get_template(template_name)

    def render_string(self, template_string: str, context: Mapping[str, Any]) -> str:
        return self._real().render_string(template_string, context)

    def register_template_callable(self, key: str, template_callable: Callable[..., Any]) -> None:
        if self._engine is not None:
            self._engine.register_template_callable(key, template_callable)
        else:
            self._callables.append((key, template_callable))
