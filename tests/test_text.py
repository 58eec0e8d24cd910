"""Tests for grader.text: untrusted text made safe for the terminal, CSV cells and file names."""

from __future__ import annotations

import csv
import io
import os

import pytest
from rich.console import Console
from rich.text import Text

from grader.text import (
    clean_line,
    csv_cell,
    display_name,
    one_line,
    plain_text,
    rich_text,
    terminal_text,
)

HOSTILE = (
    "\x1b[31mred\x1b[0m"  # colour (CSI)
    "\x1b]0;owned title\x07"  # window title (OSC ended by BEL)
    "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\"  # hyperlink (OSC ended by ST)
    "\x1bPdcs\x1b\\"  # device control string
    "\x1b7\x1bc"  # two-byte escapes (save cursor, full reset)
    "\x9b2J"  # 8-bit CSI
    "\u202eevil\u2066"  # bidirectional overrides
    "\x00\x07\x08\x7f"  # C0 controls and DEL
    "\n\r\t"  # line breaks and tab
    "\u2028end"
)


def test_terminal_text_strips_every_kind_of_escape_and_control():
    assert terminal_text(HOSTILE) == "redlinkevil    end"


def test_terminal_text_is_one_printable_line_cut_to_its_limit():
    assert terminal_text("a\nb\r\nc") == "a b  c"
    assert terminal_text("x" * 600) == "x" * 499 + "\u2026"
    assert terminal_text("x" * 50, 10) == "x" * 9 + "\u2026"
    assert terminal_text(12.5) == "12.5"
    assert terminal_text("an unterminated title \x1b]0;rest is swallowed") == "an unterminated title "


def test_bytes_that_were_not_utf8_show_as_hex_instead_of_crashing_the_terminal():
    text = terminal_text(os.fsdecode(b"caf\xe9"))
    assert text == "caf\\xe9"
    text.encode("utf-8")  # no lone surrogate left


def test_one_line_collapses_whitespace():
    assert one_line("  a \n\n b\t\tc  ") == "a b c"
    assert one_line("x" * 20, 5) == "xxxx\u2026"


def test_clean_line_keeps_a_log_line_readable():
    assert clean_line("\x1b[31mred\x1b[0m\x07 ok\u202e\tend\r") == "red ok    end"
    assert clean_line("x" * 500, 10) == "x" * 9 + "\u2026"
    assert clean_line("x" * 500, None) == "x" * 500


def test_plain_text_is_not_cut():
    assert plain_text("a\x1b[1m" + "b" * 1000) == "a" + "b" * 1000


@pytest.mark.parametrize("markup", ["[/]", "[bold red]x[/bold red]", "[link=http://evil]x[/link]", ":smile:",
                                    "closing tag [/x] here", "a\\[b"])
def test_rich_text_prints_verbatim_and_never_raises(markup: str):
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(rich_text(markup))
    console.print(Text("label: ", style="yellow") + rich_text(markup))
    assert console.file.getvalue().splitlines() == [markup, "label: " + markup]


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+2", "'=1+2"),
    ("+1", "'+1"),
    ("-1", "'-1"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "' =1"),
    ("\r=1", "' =1"),
    ("  =1", "'  =1"),
    ("\x1b[0m=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("\uff1d1+1", "'\uff1d1+1"),
    ("alice", "alice"),
    ("a=b", "a=b"),
    ("line\nbreak\x07", "line break"),
    ("", ""),
    (None, ""),
    (3, "3"),
])
def test_csv_cell_neutralises_formulas_and_controls(value, cell):
    assert csv_cell(value) == cell


def test_csv_cells_survive_a_round_trip_through_the_csv_module():
    buffer = io.StringIO()
    cells = [csv_cell(v) for v in ('=HYPERLINK("http://evil","x")', 'quote " and, comma', "-2")]
    csv.writer(buffer).writerow(cells)
    assert next(csv.reader(io.StringIO(buffer.getvalue()))) == ["'=HYPERLINK(\"http://evil\",\"x\")",
                                                               'quote " and, comma', "'-2"]


@pytest.mark.parametrize(("raw", "shown"), [
    ("alice", "alice"),
    ("José Ñ", "José Ñ"),
    (b"caf\xe9", "caf\\xe9"),
    (os.fsdecode(b"caf\xe9"), "caf\\xe9"),
    ("two\nlines", "two\\x0alines"),
    ("esc\x1b[31m", "esc\\x1b[31m"),
    ("rtl\u202etxt", "rtl\\u202etxt"),
    ("nbsp\xa0x", "nbsp\\xa0x"),
    ("back\\slash", "back\\\\slash"),
    ("tag\U000e0041", "tag\\U000e0041"),
])
def test_display_name_is_printable_and_unambiguous(raw, shown):
    assert display_name(raw) == shown
    assert display_name(raw).isprintable()


def test_display_name_is_cut():
    assert display_name("x" * 200) == "x" * 119 + "\u2026"
    assert display_name("x" * 200, 10) == "x" * 9 + "\u2026"
