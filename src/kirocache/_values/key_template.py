"""Key templates: `KeyTemplate` renders a ``str.format``-style template into a key body.

Fields are rendered by the component rules of `ArgumentKey`; `KeyTemplate` is documented and
imported from `kirocache.keys`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from kirocache._values.argument_key import ArgumentKey, _component, _limit
from kirocache._values.fingerprint import _is_text
from kirocache.exceptions import ConfigurationError, InvalidKeyError

_FIELD = re.compile(r"([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*|\[[^\[\]]+\])*)\Z")
_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[([^\[\]]+)\]")


class KeyTemplate:
    """A ``str.format``-style key template over a function's parameters, compiled once.

    ``KeyTemplate("{user.id}:{lang}", func)`` renders ``user.id`` and ``lang`` with the scalar
    rules of `ArgumentKey` (readable ints and safe strings, ``!`` forms for bool, None and
    float, ``#`` and a hash for anything else). Fields may use attribute access and ``[index]``
    (digits index, anything else is a str key), as in ``str.format``; conversions (``!r``) and
    format specs (``:>5``) are refused, since values are never rendered by ``str()``/``repr()``.
    Two fields must be separated by literal text: with ``:`` between them, as in
    ``"{a}:{b}"``, distinct values always give distinct bodies.

    Examples:
        >>> from types import SimpleNamespace
        >>> def settings(user: object, lang: str = "en") -> None: ...
        >>> template = KeyTemplate("{user.id}:{lang}", settings)
        >>> template.build((SimpleNamespace(id=123),), {})
        '123:en'

    Args:
        template: The template, such as ``"{user_id}"``.
        func: The function whose parameters the fields name.
        max_length: Bodies longer than this are replaced by ``##`` and their hash.

    Raises:
        ConfigurationError: The template is empty or malformed, a field is not a parameter of
            ``func`` (the message lists the parameters), two fields touch, or a field has a
            conversion or format spec.
    """

    __slots__ = ("_fields", "arguments", "max_length", "template")

    def __init__(self, template: str, func: Callable[..., Any], *, max_length: int = 200) -> None:
        if not _is_text(template):
            msg = f"key template must be a non-empty str such as '{{user_id}}', got {template!r}"
            raise ConfigurationError(msg)
        self.template = template
        # The template may name self/cls (``"{self.id}"``), so nothing is skipped here.
        self.arguments = ArgumentKey(func, skip_first=False, max_length=max_length)
        self.max_length = self.arguments.max_length
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            msg = f"key template {template!r} is malformed: {exc}"
            raise ConfigurationError(msg) from exc
        owner = getattr(func, "__qualname__", None) or "the function"
        # (literal text, field, error label, root parameter, steps); field is "" after the
        # last field.
        fields: list[tuple[str, str, str, str, tuple[tuple[bool, str | int], ...]]] = []
        previous = ""
        for literal, field, spec, conversion in parsed:
            if field is None:
                fields.append((literal, "", "", "", ()))
                continue
            match = self._check(field, spec, conversion, literal, previous, owner)
            steps = tuple(
                (True, attr) if attr else (False, int(key) if key.isdigit() else key)
                for attr, key in _STEP.findall(match.group(2))
            )
            label = f"template field {{{field}}}"
            fields.append((literal, field, label, match.group(1), steps))
            previous = field
        self._fields = tuple(fields)

    def _check(
        self,
        field: str,
        spec: str | None,
        conversion: str | None,
        literal: str,
        previous: str,
        owner: str,
    ) -> re.Match[str]:
        where = f"key template {self.template!r}"
        match = _FIELD.match(field)
        if match is None:
            msg = f"{where}: field {{{field}}} must name a parameter, such as {{user_id}}"
            raise ConfigurationError(msg)
        if match.group(1) not in self.arguments.parameters:
            names = ", ".join(self.arguments.parameters) or "(none)"
            msg = (
                f"{where} uses {{{field}}}, but {owner}() has no parameter "
                f"{match.group(1)!r}; its parameters are: {names}"
            )
            raise ConfigurationError(msg)
        if conversion or spec:
            msg = (
                f"{where}: {{{field}}} has a conversion or format spec, which key templates do "
                "not support (values are rendered by the key rules: ints and safe strings as "
                "they are, anything else hashed)"
            )
            raise ConfigurationError(msg)
        if previous and not literal:
            msg = (
                f"{where}: fields {{{previous}}} and {{{field}}} touch; separate them, "
                "for example with ':'"
            )
            raise ConfigurationError(msg)
        return match

    def __repr__(self) -> str:
        return f"KeyTemplate({self.template!r})"

    def render(self, bound: Mapping[str, object]) -> str:
        """Render the template from bound arguments (the result of `ArgumentKey.bind`).

        Args:
            bound: Parameter names mapped to their values.

        Returns:
            The key body.

        Raises:
            InvalidKeyError: A field cannot be resolved for these values (a missing attribute
                or index) or its value cannot be keyed.
        """
        parts: list[str] = []
        for literal, field, label, root, steps in self._fields:
            parts.append(literal)
            if not field:
                continue
            value = bound[root]
            try:
                for is_attr, step in steps:
                    value = getattr(value, step) if is_attr else value[step]  # type: ignore[arg-type, index]
            except (AttributeError, LookupError, TypeError) as exc:
                msg = (
                    f"key template {self.template!r} cannot resolve {{{field}}} for this call: "
                    f"{type(exc).__name__}: {exc}"
                )
                raise InvalidKeyError(msg) from exc
            parts.append(_component(value, label))
        return _limit("".join(parts), self.max_length)

    def build(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """Bind the call arguments and render: ``render(arguments.bind(args, kwargs))``.

        Args:
            args: The positional arguments of the call.
            kwargs: The keyword arguments of the call.

        Returns:
            The key body.

        Raises:
            TypeError: The arguments do not fit the signature.
            InvalidKeyError: A field cannot be resolved or keyed.
        """
        return self.render(self.arguments.bind(args, kwargs))
