"""Tests for grader.parse: every bound refuses with one exact line, and show_value never grows a message or raises."""

from __future__ import annotations

import math
import time

import pytest

from grader.parse import (
    BoundedParseError,
    check_value,
    load_json,
    load_yaml,
    nesting_exceeds,
    escaped_line,
    show_value,
)

BIG = "9" * 5000


def refusal(fn, *args, **kwargs) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(BoundedParseError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    assert "\n" not in info.value.message
    return info.value.where, info.value.message


# ---------------------------------------------------------------------------------------------
# JSON


def test_load_json_reads_ordinary_json() -> None:
    assert load_json(b'{"a": [1, 2.5, "x", null, true], "b": {"c": -3}}') == {
        "a": [1, 2.5, "x", None, True], "b": {"c": -3}}


@pytest.mark.parametrize("text", [f'{{"a": {BIG}}}', f"[-{'1' * 65}]", f'{{"hp": {{"batch_size": {"7" * 400}}}}}'])
def test_an_integer_of_more_than_64_digits_is_refused(text: str) -> None:
    assert refusal(load_json, text) == ("", "an integer with more than 64 digits")


def test_64_digits_long_digit_runs_in_strings_and_long_floats_are_fine() -> None:
    assert load_json(f"[{'1' * 64}, -{'2' * 64}]") == [int("1" * 64), -int("2" * 64)]
    assert load_json(f'["{BIG}"]') == [BIG]
    assert load_json(f"[0.{'3' * 200}]") == [pytest.approx(1 / 3)]
    assert load_json(f"[{'1' * 400}.0]") == [math.inf]  # an overflowing float is inf, which validate reports


def test_nan_and_infinity_are_floats_unless_refused() -> None:
    value = load_json("[NaN, Infinity, -Infinity]")
    assert math.isnan(value[0]) and value[1:] == [math.inf, -math.inf]
    assert refusal(load_json, "[1, NaN]", allow_nan=False) == ("", "NaN is not a number JSON allows")


@pytest.mark.parametrize(("depth", "refused"), [(64, False), (65, True), (100_000, True)])
def test_nesting_deeper_than_64_levels_is_refused(depth: int, refused: bool) -> None:
    text = "[" * depth + "]" * depth
    if refused:
        assert refusal(load_json, text) == ("", "nested more than 64 levels deep")
    else:
        assert nesting_exceeds(load_json(text), 63) and not nesting_exceeds(load_json(text), 64)


def test_a_syntax_error_keeps_the_decoder_message_and_position() -> None:
    with pytest.raises(BoundedParseError) as info:
        load_json('{\n  "a": 1,\n  "b" 2\n}')
    assert (info.value.message, info.value.where, info.value.pos) == (
        "not valid JSON: Expecting ':' delimiter", "line 3, column 7", 18)


def test_bytes_that_are_not_utf8_or_too_many_are_refused() -> None:
    assert refusal(load_json, b'["\xff"]') == ("", "not UTF-8 text (byte 2)")
    assert refusal(load_json, b"[" + b"1," * 600 + b"1]", max_bytes=1000) == (
        "", "file is too large (1203 bytes; the limit is 1000 bytes)")
    assert refusal(load_json, b" " * (3 * 2**20), max_bytes=2 * 2**20) == (
        "", "file is too large (3.0 MiB; the limit is 2 MiB)")


def test_a_16_mib_document_of_integers_parses_quickly() -> None:
    text = "[" + ",".join(["1234567"] * 2_000_000) + "]"
    start = time.monotonic()
    assert len(load_json(text)) == 2_000_000
    assert time.monotonic() - start < 3.0


# ---------------------------------------------------------------------------------------------
# YAML


def test_load_yaml_reads_ordinary_yaml_and_empty_is_none() -> None:
    assert load_yaml(b"a: 1\nb: [x, 2.5, null]\nc: {d: true}\n") == {"a": 1, "b": ["x", 2.5, None], "c": {"d": True}}
    assert load_yaml(b"# nothing yet\n") is None


@pytest.mark.parametrize(("text", "where"), [
    (f"grid: {BIG}\n", "line 1, column 7"),
    (f"a: 1\nb: -{'1' * 65}\n", "line 2, column 4"),
    (f"x: 0x{'f' * 65}\n", "line 1, column 4"),
    (f"x: 0{'7' * 65}\n", "line 1, column 4"),  # YAML 1.1 octal
    (f"x: 1_{'0_' * 64}0\n", "line 1, column 4"),
    (f"x: !!int '{BIG}'\n", "line 1, column 4"),
    (f"- [1, {{k: {BIG}}}]\n", "line 1, column 11"),
])
def test_a_yaml_integer_of_more_than_64_digits_is_refused_in_every_form(text: str, where: str) -> None:
    assert refusal(load_yaml, text) == (where, "an integer with more than 64 digits")


def test_a_yaml_integer_of_64_digits_and_base_60_are_read() -> None:
    assert load_yaml(f"x: {'1' * 64}\ny: 1:30\n") == {"x": int("1" * 64), "y": 90}


def test_a_yaml_alias_bomb_is_refused_at_the_first_alias() -> None:
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    start = time.monotonic()
    assert refusal(load_yaml, bomb) == ("line 2, column 8", "YAML aliases (*name) are not allowed")
    assert time.monotonic() - start < 1.0


def test_a_lone_yaml_anchor_is_refused() -> None:
    assert refusal(load_yaml, "a: 1\nb: &x [1, 2]\n") == ("line 2, column 4", "YAML anchors (&name) are not allowed")


@pytest.mark.parametrize("depth", [65, 100_000])
def test_yaml_nested_deeper_than_64_levels_is_refused(depth: int) -> None:
    _, message = refusal(load_yaml, "[" * depth + "]" * depth)
    assert message == "nested more than 64 levels deep"


def test_yaml_syntax_errors_and_impossible_dates_are_one_line() -> None:
    assert refusal(load_yaml, "a: 1\nb: [x\n") == ("line 3, column 1", "not valid YAML: expected ',' or ']', but got "
                                                                       "'<stream end>'")
    assert refusal(load_yaml, "due: 2026-13-45\n") == ("", "not valid YAML: month must be in 1..12")
    assert refusal(load_yaml, b"a: \xff\n") == ("", "not UTF-8 text (byte 3)")


def test_check_value_refuses_long_integers_and_deep_nesting_built_another_way() -> None:
    check_value({"a": [1, 2.5, "x", int("9" * 64)]})
    with pytest.raises(BoundedParseError, match="^an integer with more than 64 digits$"):
        check_value({"a": (1, {"b": 10**64})})
    deep: list = []
    for _ in range(70):
        deep = [deep]
    with pytest.raises(BoundedParseError, match="^nested more than 64 levels deep$"):
        check_value(deep)


# ---------------------------------------------------------------------------------------------
# Showing values


@pytest.mark.parametrize(("value", "shown"), [
    ("both", "'both'"),
    (0.941, "0.941"),
    (32, "32"),
    (None, "None"),
    (["a", 1, {"b": None}], "['a', 1, {'b': None}]"),
    (float("nan"), "nan"),
    ("\x1b[31mred\u202e", "'\\x1b[31mred\\u202e'"),
    (10**5000, "<a 5001-digit integer>"),
    ("x" * 5000, "'" + "x" * 56 + "..."),
], ids=["str", "float", "int", "none", "list", "nan", "escapes", "5000-digit-int", "5000-char-str"])
def test_show_value_is_short_and_safe(value: object, shown: str) -> None:
    assert show_value(value) == shown


def test_show_value_is_bounded_for_huge_and_deep_values() -> None:
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert show_value(deep) == "[" * 57 + "..."
    big = list(range(1_000_000))
    start = time.monotonic()
    assert show_value(big, 20) == "[0, 1, 2, 3, 4, 5..."
    assert show_value({i: i for i in range(100)}, 20) == "{0: 0, 1: 1, 2: 2..."
    assert time.monotonic() - start < 0.1


def test_one_line_collapses_whitespace_escapes_controls_and_cuts() -> None:
    assert escaped_line("a\n\tb  \x1b[2Jc") == "a b \\x1b[2Jc"
    assert escaped_line("word " * 10_000, 20) == "word word word wo..."


def test_characters_yaml_does_not_allow_are_a_refusal_not_a_crash() -> None:
    assert refusal(load_yaml, b"\x00") == ("", "not valid YAML: unacceptable character #x0000: special characters "
                                               "are not allowed")
