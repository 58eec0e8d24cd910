"""The executed notebook as a self-contained HTML page, rebuilt by the grader and sanitised; no other job.

The executed notebook (``OUT/<student>/notebook.executed.ipynb``) holds whatever the
submission's cells printed, displayed or wrote into it: a plain script can even forge
the whole file. So the page shown to a student or an instructor is never a file the
submission wrote. The grader builds it here, from the notebook's bytes:

1. at most :data:`MAX_NOTEBOOK_BYTES` are read; a larger notebook gets a page that says so;
2. ``nbformat`` reads it (its validation errors are kept quiet, never logged or raised);
   bytes that are not a notebook get a page saying it could not be rendered, and why;
3. nbconvert's ``HTMLExporter`` (template ``basic``: the body only, no CDN script, no
   MathJax, ``embed_images`` off so no local file is ever read) converts it;
4. **nh3** sanitises that HTML: structural and text tags, tables, ``pre``/``code`` and
   ``img`` are kept, with ``class``/``id``/``title`` attributes; ``script``, ``style``,
   ``svg``, ``math``, ``iframe``, ``object``, ``template`` are removed with their content;
   every other tag (forms, inputs, ``base``, ``link``, ``meta``) is removed, its text kept;
   event handlers and ``style`` attributes never survive; a link keeps its ``href`` only
   for ``http:``, ``https:``, ``mailto:`` or an in-page ``#anchor``; an image keeps its
   ``src`` only as a ``data:image/png``, ``jpeg`` or ``gif`` base64 URI (SVG output and
   images on disk or on the web are not shown);
5. the result is wrapped in a page with the same Content-Security-Policy as feedback.html
   (:data:`PAGE_CSP`: no script, no connection, images from ``data:`` only) and a small
   inline stylesheet (code highlighting from Pygments).

:func:`render_notebook_html` does 1-5 in this process. :func:`write_notebook_html` (what
the grader calls) runs it in a child process (``python -m grader.nbhtml``) with a time
and memory limit, so a notebook built to make the converter hang or swell cannot stop a
batch, and writes the page atomically either way. The page starts with :data:`PAGE_HEAD`
so :func:`is_rendered_page` can tell it apart from any other HTML file.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import resource
import stat
import subprocess
import sys
from pathlib import Path

from grader.jsonio import write_text_atomic
from grader.text import plain_text, terminal_text

MIB = 1024 * 1024
MAX_NOTEBOOK_BYTES = 32 * MIB
RENDER_TIMEOUT_S = 120.0  # the child that converts one notebook is killed after this long
RENDER_MEMORY_BYTES = 4 * 1024 * MIB  # its address space limit
REASON_CHARS = 300

PAGE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
GENERATOR = "cnn-tuning-grader nbhtml"
PAGE_HEAD = (
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    f"<meta name=\"generator\" content=\"{GENERATOR}\">\n"
    f"<meta http-equiv=\"Content-Security-Policy\" content=\"{PAGE_CSP}\">\n"
)

_KEPT_TAGS = frozenset({
    "a", "abbr", "b", "bdi", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd", "del",
    "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike",
    "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul",
    "var", "wbr",
})
_DROPPED_WITH_CONTENT = frozenset({
    "script", "style", "svg", "math", "iframe", "object", "embed", "template", "noscript", "textarea", "select",
    "title", "frameset", "noembed", "noframes", "xmp", "plaintext",
})
_ATTRIBUTES = {
    "*": {"class", "id", "title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
}
_DATA_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*\Z", re.IGNORECASE)
_LINK = re.compile(r"(?:https?://|mailto:|#)", re.IGNORECASE)
_NUMBER = re.compile(r"\d{1,5}%?\Z")


class NotebookRenderError(ValueError):
    """The notebook cannot be shown as a page; the message is one line saying why."""


# ---------------------------------------------------------------- rendering (in this process)


def render_notebook_html(notebook_bytes: bytes, *, title: str) -> str:
    """The page for a notebook's bytes: the sanitised notebook, or a page saying why it could not be rendered."""
    try:
        body = notebook_body(notebook_bytes)
    except NotebookRenderError as exc:
        return error_page(str(exc), title=title)
    return page(body, title=title)


def notebook_body(notebook_bytes: bytes) -> str:
    """The notebook converted by nbconvert and sanitised by nh3 (an HTML fragment); NotebookRenderError if it cannot be."""
    if len(notebook_bytes) > MAX_NOTEBOOK_BYTES:
        raise NotebookRenderError(too_large_to_show(len(notebook_bytes)))
    nb = _read(notebook_bytes)
    try:
        raw = _export(nb)
    except RecursionError:
        raise NotebookRenderError("nbconvert could not convert it (it is nested too deeply)") from None
    except Exception as exc:  # noqa: BLE001 - whatever the converter trips on, the student gets a page saying so
        raise NotebookRenderError(f"nbconvert could not convert it ({type(exc).__name__})") from None
    return sanitize(raw)


def too_large_to_show(size: int) -> str:
    """The reason a notebook of size bytes is not rendered."""
    return f"the notebook is {size / MIB:.1f} MiB, over the {MAX_NOTEBOOK_BYTES / MIB:g} MiB limit for showing it"


def sanitize(fragment: str) -> str:
    """An HTML fragment with only what the module docstring allows left in it."""
    import nh3

    cleaner = nh3.Cleaner(
        tags=set(_KEPT_TAGS),
        clean_content_tags=set(_DROPPED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        attribute_filter=_attribute_filter,
        url_schemes={"http", "https", "mailto", "data"},
        url_relative=_relative_url,
        strip_comments=True,
        link_rel="noopener noreferrer",
    )
    return cleaner.clean(fragment)


def _attribute_filter(tag: str, name: str, value: str) -> str | None:
    if name == "src":
        return value if tag == "img" and _DATA_IMAGE.match(value.strip()) else None
    if name == "href":
        return value if tag == "a" and _LINK.match(value.strip()) else None
    if name in ("width", "height", "colspan", "rowspan", "start"):
        return value if _NUMBER.match(value.strip()) else None
    return value


def _relative_url(url: str) -> str | None:
    """Relative URLs: an in-page anchor stays; a path (another file on the grader's disk) is dropped."""
    return url if url.startswith("#") else None


def _read(notebook_bytes: bytes):  # -> nbformat.NotebookNode
    import nbformat

    try:
        text = notebook_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookRenderError(f"it is not UTF-8 text (byte {exc.start})") from None
    try:
        nb = nbformat.reads(text, as_version=4, capture_validation_error={})
    except RecursionError:
        raise NotebookRenderError("it is not a notebook nbformat can read (it is nested too deeply)") from None
    except Exception as exc:  # noqa: BLE001 - json, nbformat and its converters raise many kinds
        raise NotebookRenderError(f"it is not a notebook nbformat can read ({type(exc).__name__})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookRenderError("it is not a notebook nbformat can read (no list of cells)")
    return nb


def _export(nb) -> str:  # nb: nbformat.NotebookNode
    import logging

    from nbconvert import HTMLExporter
    from traitlets.config import Config

    quiet = [logging.getLogger(name) for name in ("nbconvert", "nbformat", "traitlets", "mistune")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.CRITICAL + 1)  # no student text reaches the grader's terminal through a warning
    try:
        exporter = HTMLExporter(config=Config(), template_name="basic", embed_images=False,
                                exclude_anchor_links=False)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": "notebook"}})
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)
    return body


# ---------------------------------------------------------------- the page


def page(body: str, *, title: str) -> str:
    """A whole page around a sanitised fragment: the CSP, the stylesheet, the title as a heading."""
    shown = html.escape(plain_text(title), quote=True)
    return (
        PAGE_HEAD
        + "<meta name=\"referrer\" content=\"no-referrer\">\n"
        + "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        + f"<title>{shown}</title>\n<style>{_css()}</style>\n</head>\n<body>\n"
        + f"<header class=\"nbhtml-title\"><h1>{shown}</h1><p>The executed notebook as the grader ran it. "
        "Scripts, interactive widgets and SVG images are not shown.</p></header>\n"
        + f"<main class=\"notebook\">\n{body}\n</main>\n</body>\n</html>\n"
    )


def error_page(reason: str, *, title: str) -> str:
    """The page shown instead of a notebook that could not be rendered."""
    line = html.escape(terminal_text(reason, REASON_CHARS), quote=True)
    body = f"<p class=\"nbhtml-error\">This notebook could not be rendered: {line}.</p>"
    return page(body, title=title)


def is_rendered_page(path: str | os.PathLike[str]) -> bool:
    """Whether path is a regular file (not a symlink) that this module wrote: it starts with PAGE_HEAD."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, len(PAGE_HEAD.encode("utf-8")))
    except OSError:
        return False
    finally:
        os.close(fd)
    return head == PAGE_HEAD.encode("utf-8")


_STYLE: list[str] = []


def _css() -> str:
    if not _STYLE:
        try:
            from pygments.formatters import HtmlFormatter

            highlight = HtmlFormatter(style="default").get_style_defs(".highlight")
        except Exception:  # noqa: BLE001 - highlighting is a nicety
            highlight = ""
        _STYLE.append(_BASE_CSS + highlight)
    return _STYLE[0]


_BASE_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:70rem;margin:2rem auto;"
    "padding:0 1rem;color:#1b1f24;line-height:1.45}"
    ".nbhtml-title{border-bottom:1px solid #d0d7de;margin-bottom:1rem}.nbhtml-title p{color:#555}"
    ".nbhtml-error{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .8rem}"
    ".cell{margin:.6rem 0}.input,.output_area{display:flex;gap:.5rem}"
    ".prompt{min-width:5.5rem;flex:none;color:#303f9f;font-family:monospace;font-size:.85rem;text-align:right;"
    "padding-top:.4rem}.output_prompt{color:#d84315}"
    ".inner_cell,.output_subarea{flex:1;min-width:0}"
    ".input_area{background:#f6f8fa;border:1px solid #d0d7de;border-radius:3px}"
    "pre{margin:0;padding:.4rem .6rem;overflow:auto;white-space:pre-wrap;word-break:break-word;"
    "font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}"
    ".highlight{background:transparent}.output_error pre{background:#fff0f0}"
    ".output_stderr pre{background:#fff5e6}"
    "table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #d0d7de;padding:.2rem .5rem;"
    "text-align:right}th{background:#f6f8fa}"
    "img{max-width:100%;height:auto}"
    ".text_cell_render{padding:0 .6rem}.text_cell .prompt{visibility:hidden}"
    ".anchor-link{visibility:hidden;text-decoration:none;margin-left:.3rem}"
    "h1:hover .anchor-link,h2:hover .anchor-link,h3:hover .anchor-link{visibility:visible}"
    ".ansi-red-fg{color:#c62828}.ansi-green-fg{color:#2e7d32}.ansi-yellow-fg{color:#9a6700}"
    ".ansi-blue-fg{color:#1565c0}.ansi-magenta-fg{color:#8e24aa}.ansi-cyan-fg{color:#00838f}"
    ".ansi-bold{font-weight:bold}"
)


# ---------------------------------------------------------------- writing (in a child process)


def read_notebook(path: str | os.PathLike[str]) -> bytes:
    """At most MAX_NOTEBOOK_BYTES + 1 bytes of a regular file (never through a symlink); NotebookRenderError if not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise NotebookRenderError(f"the executed notebook could not be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotebookRenderError("the executed notebook is not a regular file")
        if info.st_size > MAX_NOTEBOOK_BYTES:
            raise NotebookRenderError(too_large_to_show(info.st_size))
        chunks, left = [], MAX_NOTEBOOK_BYTES + 1
        while left > 0 and (chunk := os.read(fd, min(left, MIB))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_notebook_html(executed_ipynb_path: str | os.PathLike[str], dest_html_path: str | os.PathLike[str], *,
                        title: str = "Executed notebook", timeout_s: float = RENDER_TIMEOUT_S) -> str | None:
    """Render the executed notebook into dest_html_path (atomically), in a child process with a time limit.

    Always leaves a page at dest_html_path. Returns None when the notebook was rendered,
    else the one-line reason the page gives (too large, not a notebook, the converter
    failed or ran past timeout_s).
    """
    dest = Path(dest_html_path)
    package_parent = Path(__file__).resolve().parents[1]  # the child imports this same grader package
    command = [sys.executable, "-m", "grader.nbhtml", os.fspath(Path(executed_ipynb_path).absolute()),
               os.fspath(dest.absolute()), f"--title={plain_text(title)}"]  # '=': a title may start with '-'
    try:
        proc = subprocess.run(command, cwd=package_parent, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=timeout_s, start_new_session=True, check=False)
    except subprocess.TimeoutExpired:
        reason = f"converting it took longer than {timeout_s:g} s"
    except OSError as exc:
        reason = f"the converter could not start ({exc.strerror or type(exc).__name__})"
    else:
        said = proc.stdout.decode("utf-8", "replace").strip().splitlines()
        last = said[-1] if said else ""
        if proc.returncode == 0 and is_rendered_page(dest):
            return terminal_text(last.removeprefix(_NOT_RENDERED), REASON_CHARS) if last.startswith(
                _NOT_RENDERED) else None
        reason = ("the converter ran out of memory" if last == "MemoryError"
                  else f"the converter failed (exit code {proc.returncode})")
    write_text_atomic(dest, error_page(reason, title=title))
    return reason


_NOT_RENDERED = "not rendered: "


def _main(argv: list[str] | None = None) -> int:
    """The child: render one notebook into its page, under a memory limit; prints why when it could not."""
    parser = argparse.ArgumentParser(prog="python -m grader.nbhtml",
                                     description="Render an executed notebook as a sanitised, self-contained page.")
    parser.add_argument("notebook")
    parser.add_argument("html")
    parser.add_argument("--title", default="Executed notebook")
    args = parser.parse_args(argv)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (RENDER_MEMORY_BYTES, RENDER_MEMORY_BYTES))
    except (ValueError, OSError):
        pass
    try:
        body = notebook_body(read_notebook(args.notebook))
    except NotebookRenderError as exc:
        write_text_atomic(args.html, error_page(str(exc), title=args.title))
        print(_NOT_RENDERED + terminal_text(exc, REASON_CHARS))
        return 0
    except MemoryError:
        print("\nMemoryError")
        return 1
    write_text_atomic(args.html, page(body, title=args.title))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
