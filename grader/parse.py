"""Parse what a submission wrote (JSON, JSON lines, YAML) within fixed bounds, and show its values safely in messages.

A submission controls every byte the grader reads, so each parser here bounds what a
hostile file can cost the grader's own process:

- size: a document larger than `ParseLimits.max_bytes` is refused unread;
- integers: one with more than `max_int_digits` digits (`MAX_INT_DIGITS`, 64) is refused.
  Python refuses to convert integers of more than 4300 digits to or from text, and an
  integer past about 309 digits overflows every float conversion (`math.isfinite`,
  `f"{x:g}"`), so an unbounded integer would crash whatever touches it later;
- nesting: a document nested more than `max_depth` levels (`MAX_DEPTH`, 64) is refused,
  and a `RecursionError` inside a parser becomes the same refusal;
- YAML: aliases (`*name`) are refused where they occur (no alias bombs), then a lone
  anchor (`&name`); only plain data tags are built (SafeLoader).

Every refusal is a `BoundedParseError` (a `ValueError`) whose message is one line and
whose `line` and `column` (1-based) say where, when known. `show_value` renders any
parsed value for a message, never longer than asked and never raising.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Any

import yaml

MAX_BYTES = 16 * 1024 * 1024  # the largest document read
MAX_INT_DIGITS = 64  # the longest integer accepted, in digits (signs, underscores and 0x/0b prefixes not counted)
MAX_DEPTH = 64  # the deepest nesting accepted; the top-level list or mapping is level 1
MAX_SHOWN_CHARS = 60  # show_value's default length


@dataclass(frozen=True)
class ParseLimits:
    """The bounds one parse runs under; the defaults are the module constants."""

    max_bytes: int = MAX_BYTES
    max_int_digits: int = MAX_INT_DIGITS
    max_depth: int = MAX_DEPTH


class BoundedParseError(ValueError):
    """A document that cannot be read within the bounds (or at all): a one-line message and, when known, where."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None, pos: int | None = None
                 ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.pos = pos

    @property
    def where(self) -> str:
        """'line 3, column 7' when the position is known, else ''."""
        if self.line is None:
            return ""
        return f"line {self.line}, column {self.column}" if self.column is not None else f"line {self.line}"


# ---------------------------------------------------------------------------------------------
# Messages


def too_large(size: int, limit: int) -> str:
    """'file is too large (3.0 MiB; the limit is 2 MiB)', in KiB or bytes when the limit is smaller."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if limit >= scale:
            return f"file is too large ({size / scale:.1f} {unit}; the limit is {limit // scale} {unit})"
    return f"file is too large ({size} bytes; the limit is {limit} bytes)"


def too_many_digits(limit: int = MAX_INT_DIGITS) -> str:
    return f"an integer with more than {limit} digits"


def too_deep(limit: int = MAX_DEPTH) -> str:
    return f"nested more than {limit} levels deep"


# ---------------------------------------------------------------------------------------------
# JSON


def load_json(data: bytes | str, *, max_bytes: int = MAX_BYTES, max_int_digits: int = MAX_INT_DIGITS,
              max_depth: int = MAX_DEPTH, allow_nan: bool = True) -> Any:
    """The JSON value in data (UTF-8 when bytes), or BoundedParseError saying why it is refused.

    NaN, Infinity and -Infinity (and overflows such as 1e999) are read as floats when
    allow_nan, as grader.validate reports them by their JSON path; otherwise they are refused.
    A syntax error keeps the decoder's message ('not valid JSON: Expecting value') and position.
    """
    text = _text(data, max_bytes)
    kwargs: dict[str, Any] = {}
    if _may_hold_long_digits(text, max_int_digits):
        kwargs["parse_int"] = _int_parser(max_int_digits)
    if not allow_nan:
        kwargs["parse_constant"] = _refuse_constant
    try:
        value = json.loads(text, **kwargs)
    except json.JSONDecodeError as exc:
        raise BoundedParseError(f"not valid JSON: {exc.msg.removesuffix(' starting at')}",
                                line=exc.lineno, column=exc.colno, pos=exc.pos) from None
    except RecursionError:
        raise BoundedParseError(too_deep(max_depth)) from None
    _check_depth(value, max_depth, text)
    return value


def _text(data: bytes | str, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise BoundedParseError(too_large(len(data), max_bytes))
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BoundedParseError(f"not UTF-8 text (byte {exc.start})") from None


def _may_hold_long_digits(text: str, limit: int) -> bool:
    """Whether text has a run of more than limit digits (only then are integers parsed one by one, in Python)."""
    return re.search(rf"\d{{{limit + 1}}}", text) is not None


@lru_cache(maxsize=8)
def _int_parser(limit: int) -> Callable[[str], int]:
    def parse_int(token: str) -> int:
        if len(token) - token.startswith("-") > limit:
            raise BoundedParseError(too_many_digits(limit))
        return int(token)
    return parse_int


def _refuse_constant(token: str) -> Any:
    raise BoundedParseError(f"{token} is not a number JSON allows")


def _check_depth(value: Any, limit: int, text: str | None = None) -> None:
    """Refuse value when it nests more than limit levels (cheap: skipped when text has too few brackets to do so)."""
    if text is not None and text.count("[") + text.count("{") <= limit:
        return
    if nesting_exceeds(value, limit):
        raise BoundedParseError(too_deep(limit))


def nesting_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether value (dicts, lists, tuples) nests more than limit levels; iterative, any depth."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return False


def count_values(value: Any, limit: int) -> int:
    """How many values (containers and scalars) value holds, counting no further than limit + 1; iterative."""
    count = 0
    stack: list[Any] = [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def check_value(value: Any, *, max_int_digits: int = MAX_INT_DIGITS, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a value built another way (ast.literal_eval) that breaks the bounds: a long integer, deep nesting."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    bits = _max_bits(max_int_digits)
    while stack:
        item, depth = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if item.bit_length() > bits or len(str(abs(item))) > max_int_digits:
                raise BoundedParseError(too_many_digits(max_int_digits))
        elif isinstance(item, dict):
            if depth >= max_depth:
                raise BoundedParseError(too_deep(max_depth))
            stack.extend((child, depth + 1) for pair in item.items() for child in pair)
        elif isinstance(item, (list, tuple, set, frozenset)):
            if depth >= max_depth:
                raise BoundedParseError(too_deep(max_depth))
            stack.extend((child, depth + 1) for child in item)


def _max_bits(digits: int) -> int:
    return (10**digits - 1).bit_length()


# ---------------------------------------------------------------------------------------------
# YAML


def load_yaml(data: bytes | str, *, max_bytes: int = MAX_BYTES, max_int_digits: int = MAX_INT_DIGITS,
              max_depth: int = MAX_DEPTH) -> Any:
    """The YAML document in data (UTF-8 when bytes; None when empty), or BoundedParseError saying why it is refused.

    Read by a SafeLoader that refuses aliases, anchors, integers of more than
    max_int_digits digits (0x, 0b, octal, underscore and base-60 forms too) and nesting
    deeper than max_depth; syntax errors keep PyYAML's problem and position.
    """
    text = _text(data, max_bytes)
    loader = None
    try:
        loader = _BoundedLoader(text, max_int_digits=max_int_digits, max_depth=max_depth)  # refuses NUL and such
        doc = loader.get_single_data()
        loader.refuse_anchor()
        return doc
    except BoundedParseError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"not valid YAML: {escaped_line(str(exc.problem or exc.context or 'error'))}"
        raise BoundedParseError(message, line=mark.line + 1 if mark else None,
                                column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "error"
        raise BoundedParseError(f"not valid YAML: {escaped_line(first)}") from None
    except RecursionError:
        raise BoundedParseError(too_deep(max_depth)) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor refusing a value (a date such as 2026-13-45)
        raise BoundedParseError(f"not valid YAML: {escaped_line(str(exc) or type(exc).__name__)}") from None
    finally:
        if loader is not None:
            loader.dispose()


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader with bounds: no aliases or anchors, short integers, shallow nesting."""

    def __init__(self, stream: str, *, max_int_digits: int, max_depth: int) -> None:
        super().__init__(stream)
        self._max_int_digits = max_int_digits
        self._max_depth = max_depth
        self._depth = 0
        self._anchor: yaml.Event | None = None

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _refusal("YAML aliases (*name) are not allowed", event.start_mark)
        if getattr(event, "anchor", None) is not None and self._anchor is None:
            self._anchor = event
        self._depth += 1
        try:
            if self._depth > self._max_depth:
                raise _refusal(too_deep(self._max_depth), event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def refuse_anchor(self) -> None:
        if self._anchor is not None:
            raise _refusal("YAML anchors (&name) are not allowed", self._anchor.start_mark)

    def construct_bounded_int(self, node: yaml.ScalarNode) -> Any:
        value = str(self.construct_scalar(node))
        digits = re.sub(r"^[-+]?(0[xob])?|[_:]", "", value.lower())
        if len(digits) > self._max_int_digits:
            raise _refusal(too_many_digits(self._max_int_digits), node.start_mark)
        return self.construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_bounded_int)


def _refusal(message: str, mark: Any) -> BoundedParseError:
    return BoundedParseError(message, line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None)


# ---------------------------------------------------------------------------------------------
# Showing values in messages


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def show_value(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """value as one line for a message, as Python's repr would write it, cut to limit characters ('...' at the end).

    Never raises and never costs more than the shown part: a 5000-character string,
    a 5000-digit integer (shown as '<a 5000-digit integer>'), a million-item list or a
    deeply nested one are all cut short. Control and bidirectional characters are escaped.
    """
    limit = max(limit, 4)
    pieces: list[str] = []
    size = 0
    stack: list[Any] = [value]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, _Literal):
            piece = item.text
        elif isinstance(item, dict):
            entries = list(islice(item.items(), limit))
            stack.append(_Literal("}" if len(entries) == len(item) else ", ...}"))
            for i, (key, val) in enumerate(reversed(entries)):
                stack += [val, _Literal(": "), key]
                if i < len(entries) - 1:
                    stack.append(_Literal(", "))
            piece = "{"
        elif isinstance(item, (list, tuple, set, frozenset)):
            opening, closing = ("(", ")") if isinstance(item, tuple) else ("{", "}") if item and isinstance(
                item, (set, frozenset)) else ("[", "]")
            entries = list(islice(item, limit))
            stack.append(_Literal(closing if len(entries) == len(item) else ", ..." + closing))
            for i, val in enumerate(reversed(entries)):
                stack.append(val)
                if i < len(entries) - 1:
                    stack.append(_Literal(", "))
            piece = opening
        else:
            piece = _scalar(item, limit)
        pieces.append(piece)
        size += len(piece)
    text = "".join(pieces)
    if stack or len(text) > limit:
        return text[: limit - 3] + "..."
    return text


@dataclass(frozen=True)
class _Literal:
    text: str


def _scalar(item: Any, limit: int) -> str:
    try:
        if isinstance(item, bool) or item is None:
            return repr(item)
        if isinstance(item, int):
            return show_int(item)
        if isinstance(item, str):
            return _escape(repr(item[: limit + 1]) if len(item) > limit + 1 else repr(item))
        if isinstance(item, (bytes, bytearray)):
            return repr(bytes(item[: limit + 1]))
        if isinstance(item, float):
            return repr(item)
        return _escape(repr(item)[: limit + 1])
    except Exception:  # noqa: BLE001 - a value that cannot be shown must not cost the message
        return f"<{type(item).__name__}>"


def show_int(value: int) -> str:
    """An integer as text; one too long to write ('<a 5000-digit integer>') by its size."""
    if value.bit_length() <= 3000:  # under 904 digits: str() is cheap and allowed
        return str(value)
    digits = int((value.bit_length() - 1) * 0.30102999566398) + 1  # the digits of 2**(bits - 1): at most one short
    if abs(value) >= 10**digits:
        digits += 1
    return f"<a {digits}-digit integer>"


def _escape(text: str) -> str:
    """text with control and bidirectional characters written as escapes (repr leaves C1 controls and some marks)."""
    if text.isprintable():  # the usual case, checked in C: no control, format or separator character
        return text
    text = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                       text)
    return "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf") else f"\\u{ord(ch):04x}" for ch in text)


def escaped_line(text: str, limit: int = 300) -> str:
    """text as one line of at most limit characters: whitespace runs become one space, control and
    bidirectional characters are escaped, a longer text is cut ('...' at the end). Costs O(limit), not O(len(text))."""
    head = text[: 4 * limit + 8]
    head = _escape(" ".join(head.split()))
    if len(head) <= limit and len(text) <= 4 * limit + 8:
        return head
    return head[: limit - 3] + "..."
