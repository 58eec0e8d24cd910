"""Tests for grader.nbhtml: the executed notebook's page, rebuilt by the grader and sanitised."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from grader.nbhtml import (
    MAX_NOTEBOOK_BYTES,
    PAGE_CSP,
    PAGE_HEAD,
    is_rendered_page,
    render_notebook_html,
    sanitize,
    write_notebook_html,
)

MIB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 24
PNG_B64 = base64.b64encode(PNG).decode("ascii")
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{PAGE_CSP}">'
NOT_RENDERED = "This notebook could not be rendered: "


def executed_notebook() -> nbformat.NotebookNode:
    """A small executed notebook: a heading, code, printed text, a result, a table, a figure and an error."""
    return new_notebook(cells=[
        new_markdown_cell("# Tuning the CNN\n\nGrid search over *learning rate*; see [Keras](https://keras.io)."),
        new_code_cell("best = max(scores)\nprint(best)", execution_count=1, outputs=[
            new_output("stream", name="stdout", text="0.9812\n"),
            new_output("execute_result", data={"text/plain": "{'lr': 0.001}"}, execution_count=1),
        ]),
        new_code_cell("df", execution_count=2, outputs=[
            new_output("execute_result", execution_count=2, data={
                "text/html": "<style scoped>td{color:red}</style><table class=\"dataframe\"><thead><tr><th>lr</th>"
                             "<th>acc</th></tr></thead><tbody><tr><td>0.001</td><td>0.98</td></tr></tbody></table>",
                "text/plain": "lr acc"}),
        ]),
        new_code_cell("plt.plot(x)", execution_count=3, outputs=[
            new_output("display_data", data={"image/png": PNG_B64, "text/plain": "<Figure>"}),
        ]),
        new_code_cell("1/0", execution_count=4, outputs=[
            new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                       traceback=["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"]),
        ]),
    ])


def hostile_notebook() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("Hello <script>alert(1)</script> <a href=\"javascript:alert(2)\">click</a> "
                          "[md link](javascript:alert(3)) <img src=\"x\" onerror=\"alert(4)\"> "
                          "<iframe src=\"https://evil\"></iframe> <form action=\"https://evil\"><input></form> "
                          "<div style=\"position:fixed\" onclick=\"alert(5)\">styled</div> "
                          "<a href=\"../other_student/feedback.html\">theirs</a> ![disk](/etc/passwd) "
                          "<svg onload=\"alert(6)\"><script>alert(7)</script></svg> "
                          "<img src=\"data:image/svg+xml;base64,PHN2Zz4=\"> <base href=\"https://evil/\">"
                          "<meta http-equiv=\"refresh\" content=\"0;url=https://evil\">"),
        new_code_cell("show()", execution_count=1, outputs=[
            new_output("display_data", data={
                "text/html": "<img src=x onerror=alert(8)><a href='javascript:alert(9)'>link</a>"
                             "<a href=' JaVaScRiPt:alert(10)'>spaced</a><object data='x.swf'></object>",
                "text/plain": "x"}),
            new_output("display_data", data={"application/javascript": "alert(11)"}),
            new_output("display_data", data={"image/png": PNG_B64, "text/plain": "<Figure>"}),
        ]),
    ])


def render(nb: nbformat.NotebookNode, title: str = "s001") -> str:
    return render_notebook_html(nbformat.writes(nb).encode("utf-8"), title=title)


def test_a_normal_executed_notebook_renders_its_code_and_outputs():
    page = render(executed_notebook())
    assert page.startswith(PAGE_HEAD) and CSP_META in page
    assert '<h1 id="Tuning-the-CNN">Tuning the CNN' in page
    assert '<a href="https://keras.io" rel="noopener noreferrer">Keras</a>' in page
    text = re.sub(r"<[^>]+>", "", page)
    assert "best = max(scores)\nprint(best)" in text
    assert "<pre>0.9812\n</pre>" in page and "<pre>{'lr': 0.001}</pre>" in page
    assert '<table class="dataframe">' in page and "<td>0.98</td>" in page
    assert f'src="data:image/png;base64,{PNG_B64}"' in page
    assert "ZeroDivisionError" in text and "\x1b" not in page
    assert NOT_RENDERED not in page


def test_scripts_handlers_and_dangerous_links_never_survive():
    page = render(hostile_notebook())
    lowered = page.lower()
    for banned in ("<script", "onerror", "onclick", "onload", "javascript:", "<iframe", "<form", "<input",
                   "<object", "<svg", "<base", "http-equiv=\"refresh\"", "alert(", "style=\"", "/etc/passwd",
                   "other_student", "image/svg+xml", "https://evil"):
        assert banned not in lowered, banned
    assert f'src="data:image/png;base64,{PNG_B64}"' in page  # the figure still shows
    assert "styled" in page and "click" in page and "theirs" in page  # text is kept, only the tags go
    assert page.count("<style>") == 1  # the grader's own stylesheet, nothing from the notebook


def test_the_page_has_no_external_asset():
    page = render(executed_notebook())
    assert "<link" not in page and "@import" not in page and "mathjax" not in page.lower()
    assert not re.search(r"""\bsrc\s*=\s*(?!["']?data:image/png)""", page)


def test_the_title_is_escaped():
    page = render(executed_notebook(), title="<b>x</b>\x1b[2J")
    assert "<title>&lt;b&gt;x&lt;/b&gt;</title>" in page and "\x1b" not in page


@pytest.mark.parametrize(("fragment", "kept"), [
    ('<a href="#section">in page</a>', '<a href="#section" rel="noopener noreferrer">in page</a>'),
    ('<a href="mailto:ta@example.edu">mail</a>', '<a href="mailto:ta@example.edu" rel="noopener noreferrer">mail</a>'),
    ('<a href="data:text/html,x">d</a>', '<a rel="noopener noreferrer">d</a>'),
    ('<img src="data:image/jpeg;base64,AAAA" width="10" height="x">', '<img src="data:image/jpeg;base64,AAAA" width="10">'),
    ('<img src="https://tracker.example/pixel.gif">', "<img>"),
    ('<td colspan="2" onmouseover="x()">c</td>', 'c'),
    ('<table><tr><td colspan="2" onmouseover="x()">c</td></tr></table>',
     '<table><tbody><tr><td colspan="2">c</td></tr></tbody></table>'),
])
def test_sanitize_keeps_only_safe_links_and_images(fragment: str, kept: str):
    assert sanitize(fragment) == kept


def test_a_notebook_over_the_limit_is_refused_with_its_size():
    page = render_notebook_html(b" " * (40 * MIB), title="s001")
    assert f"{NOT_RENDERED}the notebook is 40.0 MiB, over the 32 MiB limit for showing it.</p>" in page
    assert page.startswith(PAGE_HEAD) and CSP_META in page
    assert MAX_NOTEBOOK_BYTES == 32 * MIB


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xff\xfe garbage \x00\x01", "it is not UTF-8 text (byte 0)"),
    (b"not json at all", "it is not a notebook nbformat can read (NotJSONError)"),
    (b'{"cells": 5}', "it is not a notebook nbformat can read (TypeError)"),
    (b"[" * 100_000 + b"]" * 100_000, "it is not a notebook nbformat can read (it is nested too deeply)"),
    (b"", "it is not a notebook nbformat can read (NotJSONError)"),
])
def test_bytes_that_are_not_a_notebook_give_a_page_saying_so(data: bytes, reason: str):
    page = render_notebook_html(data, title="s001")
    assert f"{NOT_RENDERED}{reason}.</p>" in page
    assert page.startswith(PAGE_HEAD)


def test_write_notebook_html_renders_in_a_child_and_writes_the_page(tmp_path: Path):
    source = tmp_path / "notebook.executed.ipynb"
    source.write_text(nbformat.writes(hostile_notebook()), "utf-8")
    dest = tmp_path / "notebook.html"
    assert write_notebook_html(source, dest, title="-007 <b>") is None  # a title may look like an option
    page = dest.read_text("utf-8")
    assert is_rendered_page(dest) and "<title>-007 &lt;b&gt;</title>" in page
    assert "<script" not in page.lower() and f'src="data:image/png;base64,{PNG_B64}"' in page


def test_write_notebook_html_writes_a_page_for_what_it_cannot_render(tmp_path: Path):
    dest = tmp_path / "notebook.html"
    big = tmp_path / "big.ipynb"
    with open(big, "wb") as fh:
        fh.truncate(40 * MIB)
    assert write_notebook_html(big, dest, title="s001") == "the notebook is 40.0 MiB, over the 32 MiB limit for showing it"
    assert is_rendered_page(dest)
    assert "over the 32 MiB limit" in dest.read_text("utf-8")

    (tmp_path / "secret.ipynb").write_text(nbformat.writes(executed_notebook()), "utf-8")
    (tmp_path / "link.ipynb").symlink_to(tmp_path / "secret.ipynb")
    reason = write_notebook_html(tmp_path / "link.ipynb", dest, title="s001")
    assert reason is not None and reason.startswith("the executed notebook could not be opened")
    assert "ZeroDivisionError" not in dest.read_text("utf-8")

    assert write_notebook_html(tmp_path / "missing.ipynb", dest) == (
        "the executed notebook could not be opened (No such file or directory)")


def test_is_rendered_page_tells_the_graders_pages_from_any_other_file(tmp_path: Path):
    ours = tmp_path / "ours.html"
    ours.write_text(render(executed_notebook()), "utf-8")
    theirs = tmp_path / "theirs.html"
    theirs.write_text("<!DOCTYPE html>\n<html><script>alert(1)</script>", "utf-8")
    link = tmp_path / "link.html"
    link.symlink_to(ours)
    assert is_rendered_page(ours)
    assert not is_rendered_page(theirs) and not is_rendered_page(link) and not is_rendered_page(tmp_path)
    assert not is_rendered_page(tmp_path / "missing.html")


def test_a_converter_that_runs_past_its_time_gets_a_page_saying_so(tmp_path: Path):
    source = tmp_path / "notebook.executed.ipynb"
    source.write_text(nbformat.writes(executed_notebook()), "utf-8")
    dest = tmp_path / "notebook.html"
    assert write_notebook_html(source, dest, timeout_s=0.001) == "converting it took longer than 0.001 s"
    assert is_rendered_page(dest)
    assert f"{NOT_RENDERED}converting it took longer than 0.001 s.</p>" in dest.read_text("utf-8")
