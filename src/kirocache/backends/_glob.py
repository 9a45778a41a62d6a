r"""Redis glob patterns (as SCAN MATCH takes them) translated to Python regular expressions.

The standard library's ``fnmatch`` has other rules (``[!a]`` negation, no ``\`` escapes), so
the translation follows Redis's ``stringmatchlen`` instead, quirks included:

* ``*`` matches any run of characters, ``?`` exactly one, ``\x`` the literal ``x``;
* ``[abc]`` one of the set, ``[^abc]`` one outside it, ``[a-z]`` a range (reversed ranges such
  as ``[z-a]`` are swapped), ``\`` escapes inside brackets too;
* ``[]`` matches nothing, ``[^]`` any one character, and an unclosed ``[`` runs to the end of
  the pattern; a trailing lone ``\`` is a literal backslash.

Redis compares bytes while these expressions compare characters, so ``?`` and bracket sets
agree with Redis on ASCII keys; on other characters ``?`` here matches one character where
Redis would match one byte of its UTF-8 encoding.
"""

from __future__ import annotations

import functools
import re

__all__ = ["escape_glob", "glob_to_regex"]

_SPECIALS = frozenset("*?[]\\")


def escape_glob(text: str) -> str:
    r"""Escape the glob specials of a literal so it only matches itself.

    Use it for the fixed part of a pattern, such as a key prefix:
    ``escape_glob(prefix) + "user:*"``.

    Args:
        text: Literal text, such as a key prefix.

    Returns:
        ``text`` with ``*``, ``?``, ``[``, ``]`` and ``\`` preceded by a backslash.
    """
    if not _SPECIALS.intersection(text):
        return text
    return "".join("\\" + char if char in _SPECIALS else char for char in text)


@functools.lru_cache(maxsize=256)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Redis glob pattern into an anchored regular expression.

    Args:
        pattern: A Redis glob pattern, such as ``"user:*:profile"`` or ``"k[0-9]?"``.

    Returns:
        A compiled expression that matches a whole key (``match`` and ``fullmatch`` agree).
    """
    parts: list[str] = []
    i, end = 0, len(pattern)
    while i < end:
        char = pattern[i]
        if char == "*":
            while i + 1 < end and pattern[i + 1] == "*":
                i += 1
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        elif char == "[":
            i = _translate_set(pattern, i + 1, parts)
        elif char == "\\" and i + 1 < end:
            i += 1
            parts.append(re.escape(pattern[i]))
        else:
            parts.append(re.escape(char))
        i += 1
    return re.compile(r"\A(?:" + "".join(parts) + r")\Z", re.DOTALL)


def _translate_set(pattern: str, i: int, parts: list[str]) -> int:
    """Append the regex of the bracket set starting after ``[`` at ``i``; return its end.

    Returns the index of the closing ``]`` (or the last index of the pattern when the set
    is unclosed), so the caller's ``i += 1`` steps past it.
    """
    end = len(pattern)
    negated = i < end and pattern[i] == "^"
    if negated:
        i += 1
    members: list[str] = []
    while i < end:
        char = pattern[i]
        if char == "\\" and i + 1 < end:
            i += 1
            members.append(re.escape(pattern[i]))
        elif char == "]":
            break
        elif i + 2 < end and pattern[i + 1] == "-":
            # Redis takes the character after "-" as the range's end whatever it is,
            # even "]" or "\", and swaps a reversed range instead of rejecting it.
            low, high = sorted((char, pattern[i + 2]))
            members.append(re.escape(low) + "-" + re.escape(high))
            i += 2
        else:
            members.append(re.escape(char))
        i += 1
    if not members:
        parts.append("." if negated else "(?!)")
    else:
        parts.append(("[^" if negated else "[") + "".join(members) + "]")
    return i if i < end else end - 1
