"""Argument keys: `ArgumentKey` turns the arguments of one call into the body of a key.

The encoding, and why it is injective, is described in the docstring of `kirocache.keys`,
where `ArgumentKey` is documented and imported from.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

from kirocache._values.fingerprint import _digest, _hex128
from kirocache.exceptions import ConfigurationError, InvalidKeyError

_BARE = re.compile(r"(?!-?[0-9]+\Z)[A-Za-z0-9_.@\-]{1,64}\Z")
_NAME = re.compile(r"[A-Za-z0-9_.@\-]{1,64}\Z")
_INT_LIMIT: Final = 10**20
_HASHED_BODY: Final = "##"
_MIN_LENGTH: Final = len(_HASHED_BODY) + 32


def _component(value: Any, label: str, index: int | str | None = None) -> str:
    t = type(value)
    if t is str:
        if _BARE.match(value):
            return cast(str, value)
    elif t is int:
        if -_INT_LIMIT < value < _INT_LIMIT:
            return str(value)
    elif value is None:
        return "!none"
    elif t is bool:
        return "!true" if value else "!false"
    elif t is float:
        return "!" + float.__repr__(value)
    return "#" + _digest(value, label, index)


def _limit(body: str, max_length: int) -> str:
    if len(body) > max_length:
        return _HASHED_BODY + _hex128(body.encode())
    return body


def _check_max_length(max_length: int) -> int:
    if type(max_length) is not int or max_length < _MIN_LENGTH:
        msg = (
            f"max_length must be an int >= {_MIN_LENGTH} (the length of a hashed body), "
            f"got {max_length!r}"
        )
        raise ConfigurationError(msg)
    return max_length


_REQUIRED: Final = inspect.Parameter.empty
_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class ArgumentKey:
    """Builds key bodies from a function's call arguments; everything is precomputed once.

    The encoding is described, and shown injective, in this module's docstring.

    Examples:
        >>> def profile(user_id: int, lang: str = "en") -> dict[str, str]: ...
        >>> keys = ArgumentKey(profile)
        >>> keys.build((123,), {}), keys.build((), {"user_id": 123, "lang": "en"})
        ('123:en', '123:en')

    Args:
        func: The function whose calls are keyed. A ``classmethod`` or ``staticmethod``
            object is unwrapped.
        skip_first: Leave the first parameter out of the body. ``None`` (the default) skips it
            when it is named ``self`` or ``cls``, or when ``func`` is a ``classmethod``.
        max_length: Bodies longer than this are replaced by ``##`` and their hash.

    Raises:
        ConfigurationError: The signature cannot be read, ``skip_first=True`` with no
            positional first parameter, or ``max_length`` is below 34.
    """

    __slots__ = (
        "_by_position",
        "_defaults",
        "_keywords",
        "_npos",
        "_plan",
        "_positional",
        "_simple",
        "_total",
        "_varkw",
        "_varpos",
        "max_length",
        "parameters",
        "signature",
        "skipped",
    )

    def __init__(
        self, func: Callable[..., Any], *, skip_first: bool | None = None, max_length: int = 200
    ) -> None:
        is_classmethod = isinstance(func, classmethod)
        if isinstance(func, (classmethod, staticmethod)):
            func = func.__func__
        try:
            self.signature: inspect.Signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:
            msg = f"cannot read the signature of {func!r} to build keys: {exc}; pass key=..."
            raise ConfigurationError(msg) from exc
        self.max_length: int = _check_max_length(max_length)
        params = list(self.signature.parameters.values())
        self.parameters: tuple[str, ...] = tuple(p.name for p in params)
        first = params[0] if params and params[0].kind in _POSITIONAL else None
        if skip_first is None:
            skip_first = first is not None and (is_classmethod or first.name in ("self", "cls"))
        if skip_first and first is None:
            msg = f"skip_first=True, but {func!r} has no positional first parameter"
            raise ConfigurationError(msg)
        self.skipped: str | None = first.name if skip_first and first is not None else None
        self._positional = tuple(p.name for p in params if p.kind in _POSITIONAL)
        self._npos = len(self._positional)
        self._keywords = frozenset(
            p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        self._varpos = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), None)
        self._varkw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
        self._defaults = tuple(
            (p.name, p.default) for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )
        self._total = len(params)
        stars: dict[Any, str] = {
            inspect.Parameter.VAR_POSITIONAL: "*",
            inspect.Parameter.VAR_KEYWORD: "**",
        }
        self._plan = tuple(
            (p.name, p.kind, f"argument {stars.get(p.kind, '') + p.name!r}")
            for p in params
            if p.name != self.skipped
        )
        # Without *args/**kwargs every parameter is one component: render takes a short path.
        self._simple: tuple[tuple[str, str], ...] | None = (
            None if self._varpos or self._varkw else tuple((n, lbl) for n, _, lbl in self._plan)
        )
        # And a call passing every positional parameter by position, no keyword: build takes
        # the components straight from ``args`` (the index of each, and its label).
        self._by_position: tuple[tuple[int, str], ...] | None = None
        if self._simple is not None and len(self._positional) == self._total:
            self._by_position = tuple(
                (self._positional.index(name), label) for name, label in self._simple
            )

    def __repr__(self) -> str:
        return f"ArgumentKey({self.signature}, skipped={self.skipped!r})"

    def _bind_slow(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Bind call arguments to the parameters, defaults applied, as ``Signature.bind`` does.

        Args:
            args: The positional arguments of the call (``self`` included for a method).
            kwargs: The keyword arguments of the call.

        Returns:
            Every parameter name mapped to its value; ``*args`` to a tuple, ``**kwargs`` to a
            dict, both possibly empty.

        Raises:
            TypeError: The arguments do not fit the signature (the error ``Signature.bind``
                raises).
        """
        npos = self._npos
        # Fewer args than positional parameters is normal (defaults), hence no strict=.
        bound = dict(zip(self._positional, args))  # noqa: B905
        if self._varpos is not None:
            bound[self._varpos] = args[npos:]
        elif len(args) > npos:
            return self._bind_slow(args, kwargs)
        if self._varkw is not None:
            extra: dict[str, Any] = {}
            bound[self._varkw] = extra
        for name, value in kwargs.items():
            if name in self._keywords:
                if name in bound:
                    return self._bind_slow(args, kwargs)
                bound[name] = value
            elif self._varkw is not None:
                extra[name] = value
            else:
                return self._bind_slow(args, kwargs)
        if len(bound) != self._total:
            for name, default in self._defaults:
                if name not in bound:
                    if default is _REQUIRED:
                        return self._bind_slow(args, kwargs)
                    bound[name] = default
        return bound

    def render(self, bound: Mapping[str, object]) -> str:
        """Build the key body from bound arguments (the result of `bind`).

        Args:
            bound: Every parameter name mapped to its value.

        Returns:
            The body; ``""`` for a function with no parameters besides ``self``/``cls``.

        Raises:
            InvalidKeyError: An argument holds a type that cannot be keyed (the message names
                the argument and the type), or a ``**kwargs`` value is not a dict of str keys.
        """
        if self._simple is not None:
            body = ":".join([_component(bound[name], label) for name, label in self._simple])
            return body if len(body) <= self.max_length else _limit(body, self.max_length)
        parts: list[str] = []
        for name, kind, label in self._plan:
            value = bound[name]
            if kind is inspect.Parameter.VAR_POSITIONAL:
                items: tuple[object, ...] = value  # type: ignore[assignment]
                parts.extend(_component(item, label, i) for i, item in enumerate(items))
            elif kind is inspect.Parameter.VAR_KEYWORD:
                if not isinstance(value, dict) or not all(type(k) is str for k in value):
                    msg = f"{label} must be a dict with str keys to build a cache key"
                    raise InvalidKeyError(msg)
                for k in sorted(value):
                    head = k if _NAME.match(k) else "#" + _digest(k, f"{label} key")
                    parts.append(f"{head}={_component(value[k], label, k)}")
            else:
                parts.append(_component(value, label))
        return _limit(":".join(parts), self.max_length)

    def builder(self) -> Callable[[tuple[Any, ...], Mapping[str, Any]], str]:
        """``build``, or a quicker function giving the same bodies for this signature.

        For one keyed parameter passed by position (``get_profile(42)``, a method's
        ``self.get(42)``), the quick function turns an ``int`` or a plain ``str`` into the
        body without binding, and hands every other call to ``build``.
        """
        fast = self._by_position
        # a plain str is up to 64 characters: never hashed under a max_length of 64 or more
        if fast is None or len(fast) != 1 or self.max_length < 64:
            return self.build
        [(at, _)] = fast
        count, build, bare = self._npos, self.build, _BARE.match
        low, high = -_INT_LIMIT, _INT_LIMIT

        def one(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
            if not kwargs and len(args) == count:
                value = args[at]
                kind = value.__class__
                if kind is int:
                    if low < value < high:
                        return repr(value)
                elif kind is str and bare(value):
                    text: str = value  # no cast(): a call on every hit
                    return text
            return build(args, kwargs)

        return one

    def build(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """Bind the call arguments and build the key body: ``render(bind(args, kwargs))``.

        Args:
            args: The positional arguments of the call.
            kwargs: The keyword arguments of the call.

        Returns:
            The key body.

        Raises:
            TypeError: The arguments do not fit the signature.
            InvalidKeyError: An argument cannot be keyed.
        """
        fast = self._by_position
        if fast is not None and not kwargs and len(args) == self._npos:
            if len(fast) == 1:
                body = _component(args[fast[0][0]], fast[0][1])
            else:
                body = ":".join([_component(args[at], label) for at, label in fast])
            return body if len(body) <= self.max_length else _limit(body, self.max_length)
        return self.render(self.bind(args, kwargs))
