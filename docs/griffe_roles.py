"""A griffe extension that renders Sphinx roles in docstrings as Markdown code spans.

The docstrings use roles such as ``:class:`Backend``` and ``:meth:`~Backend.get```, which
Markdown would print as they are; this turns them into ``Backend`` and ``get``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:attr|class|data|exc|func|meth|mod|obj):"
    r"`(?P<tilde>~?)(?P<target>[^`]+)`"
)


def _code_span(match: re.Match[str]) -> str:
    target = match["target"]
    if match["tilde"]:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def strip_roles(text: str) -> str:
    """Replace every Sphinx cross-reference role in ``text`` by a code span."""
    return _ROLE.sub(_code_span, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the docstring of every object griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = strip_roles(obj.docstring.value)
