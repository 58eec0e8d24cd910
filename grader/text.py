"""Untrusted text made safe for where the grader puts it: the terminal, a CSV cell, a file name in a message.

Everything a submission leaves (its folder's name, stderr, trial ids, answers) may have
been written by an attacker. Each function here takes such text and returns a form that
cannot act on the place it goes to:

- :func:`terminal_text`: one printable line: ANSI/VT escape sequences (CSI, OSC such as
  terminal-title codes, DCS/APC/PM/SOS strings, two-byte escapes) removed, C0/C1 control
  characters and bidirectional overrides removed, line breaks and tabs turned into
  spaces, bytes that were not UTF-8 (lone surrogates) shown as ``\\xNN``, cut to a limit;
- :func:`one_line`: :func:`terminal_text` with runs of whitespace collapsed to one space;
- :func:`clean_line`: the same cleaning for one line of a log shown in feedback (tabs
  become four spaces, nothing else turns into a space);
- :func:`rich_text`: :func:`terminal_text` wrapped in a ``rich.text.Text``, which rich
  prints as is: no markup (``[/]``, ``[link=...]``), no ``:emoji:`` codes, no highlighting.
  Print every line that holds untrusted text through it, or with
  ``Console.print(..., markup=False, emoji=False, highlight=False)``; a plain ``str``
  given to rich (``print``, ``Table.add_row``, a progress description) is parsed as markup;
- :func:`csv_cell`: a cell no spreadsheet evaluates: control characters removed, and a
  cell that starts (after spaces) with ``=``, ``+``, ``-``, ``@`` (or their full-width
  forms), a tab or a CR gets a leading single quote (OWASP's advice on CSV injection);
- :func:`display_name`: any file name, ``str`` or raw ``bytes``, in an unambiguous
  printable form: bytes that are not UTF-8 as ``\\xNN``, other unprintable characters as
  ``\\xNN``/``\\uNNNN``, a backslash doubled.

All of them are pure functions of their input, and none of them raises on any ``str``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from rich.text import Text

TERMINAL_CHARS = 500  # a line printed for the instructor is cut to this
LOG_LINE_CHARS = 300  # a log line shown in feedback is cut to this
NAME_CHARS = 120  # a file name shown in a message is cut to this
ELLIPSIS = "\u2026"

# ESC followed by: CSI (ESC [ params intermediates final), a string command (OSC ESC ],
# DCS ESC P, SOS ESC X, PM ESC ^, APC ESC _) ended by BEL or ST (ESC \) or left open to the
# end, or any other two-byte escape (ESC and one character in 0x20-0x7e).
_ESCAPE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]?"
    r"|[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|[ -~])?"
)
# The 8-bit forms: CSI (0x9b) and the string commands OSC/DCS/SOS/PM/APC (0x9d, 0x90, 0x98, 0x9e, 0x9f).
_ESCAPE_C1 = re.compile(r"\x9b[0-?]*[ -/]*[@-~]?|[\x9d\x90\x98\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?")
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def strip_escapes(text: str) -> str:
    """text without terminal escape sequences (7-bit and 8-bit forms); nothing else is changed."""
    return _ESCAPE_C1.sub("", _ESCAPE.sub("", text))


def _drop_controls(text: str) -> str:
    """text without control characters (category Cc) and bidirectional controls; lone surrogates as \\xNN."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            out.append(f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}")
        elif ch in BIDI or unicodedata.category(ch) == "Cc":
            continue
        else:
            out.append(ch)
    return "".join(out)


def cut(text: str, limit: int | None) -> str:
    """text, or its first limit-1 characters and an ellipsis when it is longer than limit (None: no limit)."""
    if limit is None:
        return text
    if limit < 1:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def terminal_text(text: Any, limit: int | None = TERMINAL_CHARS) -> str:
    """text (``str()`` of anything) as one printable line for a terminal, cut to limit; see the module docstring."""
    line = strip_escapes(str(text))
    line = line.translate({ord(c): " " for c in _LINE_BREAKS + "\t"})
    return cut(_drop_controls(line), limit)


def one_line(text: Any, limit: int | None = TERMINAL_CHARS) -> str:
    """terminal_text(text) with runs of spaces collapsed and the ends stripped, cut to limit (None: no cut).

    With a limit it costs O(limit), not O(len(text)): only the head of a long text is looked at.
    """
    raw = str(text)
    head = raw if limit is None else raw[: 8 * limit + 64]
    line = " ".join(terminal_text(head, None).split())
    if limit is not None and len(head) < len(raw):  # the text went on: the cut shows
        return line[: max(0, limit - 1)] + ELLIPSIS
    return cut(line, limit)


def clean_line(line: str, limit: int | None = LOG_LINE_CHARS) -> str:
    """One log line without escape sequences, control or bidirectional characters (tabs become 4 spaces), cut."""
    return cut(_drop_controls(strip_escapes(line).replace("\t", "    ")), limit)


def rich_text(text: Any, style: str = "", *, limit: int | None = TERMINAL_CHARS) -> Text:
    """terminal_text(text) as a rich Text: rich prints it verbatim (no markup, emoji codes or highlighting)."""
    from rich.text import Text

    return Text(terminal_text(text, limit), style=style, no_wrap=False)


def csv_cell(text: Any) -> str:
    """text (``str()`` of anything; None gives '') as a CSV cell no spreadsheet evaluates; see the module docstring."""
    if text is None:
        return ""
    raw = str(text)
    cell = strip_escapes(raw).translate({ord(c): " " for c in _LINE_BREAKS})
    cell = _drop_controls(cell.replace("\t", " "))
    if raw.lstrip(" ")[:1] in _FORMULA_START or cell.lstrip()[:1] in _FORMULA_START:
        return "'" + cell
    return cell


def plain_text(text: Any) -> str:
    """terminal_text without the cut: escapes, controls and bidirectional characters removed, line breaks as spaces."""
    return terminal_text(text, limit=None)


def display_name(raw: str | bytes, limit: int = NAME_CHARS) -> str:
    """A file name, str or bytes, as an unambiguous printable string: no quotes added, cut to limit.

    Bytes are decoded as UTF-8 with surrogateescape, so a byte that is not UTF-8 shows as
    ``\\xNN`` (as does the lone surrogate ``os.fsdecode`` gives for it). Characters that
    are not printable (controls, formatting and bidirectional characters, separators other
    than the space) show as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``; a backslash as ``\\\\``.
    """
    name = raw.decode("utf-8", "surrogateescape") if isinstance(raw, (bytes, bytearray)) else str(raw)
    out = []
    for ch in name:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable() and ch not in BIDI:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return cut("".join(out), limit)


_MARKDOWN_ACTIVE = frozenset("\\[]<>")  # what makes a link, an image, an autolink or raw HTML (with "&" entities)


def markdown_text(text: Any) -> str:
    """text that a Markdown renderer cannot turn into a link, an image or HTML: terminal escape sequences removed,
    ``\\ [ ] < >`` backslash-escaped and ``&`` written ``&amp;``. Emphasis and code spans are left alone (harmless,
    and the grader's own messages use them)."""
    plain = strip_escapes(str(text))
    return "".join("&amp;" if ch == "&" else f"\\{ch}" if ch in _MARKDOWN_ACTIVE else ch for ch in plain)
