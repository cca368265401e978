"""Markdown and untrusted text to safe HTML, and the search tokenizer, shared by the static site,
the web UI and the ``html`` digest format.

Everything that reaches a page from the outside (digest Markdown, extracted article text, titles,
feed names) goes through ``nh3`` here or through Jinja2's autoescape: there is no third path."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt

# Tags a rendered digest may use. MDX components (``<Illustration />``) are not among them: their
# tags go and their text stays, which is what a reader of the Markdown source would see.
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
    "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "mark",
    "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table",
    "tbody", "td", "th", "thead", "tr", "u", "ul", "video",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "video": {"src", "controls", "width", "height"},
    "code": {"class"},
    "div": {"class"},
    "p": {"class"},
    "span": {"class"},
    "th": {"align", "colspan", "rowspan"},
    "td": {"align", "colspan", "rowspan"},
    "ol": {"start"},
}
# No javascript:, data: or vbscript: anywhere; relative URLs are judged by the caller's filter.
URL_SCHEMES = {"http", "https", "mailto"}

_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_ADMONITION_OPEN_RE = re.compile(r"^[ \t]*:::[ \t]*([A-Za-z]+)[ \t]*(.*?)[ \t]*$")
_ADMONITION_CLOSE_RE = re.compile(r"^[ \t]*:::[ \t]*$")
_MDX_IMPORT_RE = re.compile(r"""^import\s+(?:[\w{}*,\s]+\s+from\s+)?['"][^'"]+['"];?\s*$""")
_ABSOLUTE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")

UrlFilter = Callable[[str, str], str | None]
"""``filter(tag, url) -> url or None``: rewrites or drops a relative URL in rendered HTML."""


def _md() -> MarkdownIt:
    # CommonMark plus GFM tables and strikethrough; raw HTML is parsed so that nh3 can judge it.
    return MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    )


_MARKDOWN = _md()


def docusaurus_to_commonmark(text: str) -> str:
    """What Docusaurus adds to Markdown, turned into plain HTML blocks a CommonMark parser reads.

    ``:::tip Title`` … ``:::`` admonitions become ``<div class="admonition">`` blocks (the blank
    lines around them keep their content Markdown), MDX ``import`` lines go. Code fences are left
    alone: a ``:::`` or ``import`` inside one is code."""
    out: list[str] = []
    fence: str | None = None
    depth = 0
    for line in text.split("\n"):
        match = _FENCE_RE.match(line)
        if fence is not None:
            out.append(line)
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        if match:
            fence = match.group(1)
            out.append(line)
            continue
        opened = _ADMONITION_OPEN_RE.match(line)
        if opened:
            kind, title = opened.group(1).lower(), opened.group(2)
            depth += 1
            label = _escape(title) if title else kind
            out.append(f'\n<div class="admonition admonition-{kind}"><p class="admonition-title">{label}</p>\n')
            continue
        if depth and _ADMONITION_CLOSE_RE.match(line):
            depth -= 1
            out.append("\n</div>\n")
            continue
        if _MDX_IMPORT_RE.match(line):
            continue
        out.append(line)
    out.extend("\n</div>\n" for _ in range(depth))
    return "\n".join(out)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def is_external(url: str) -> bool:
    return bool(_ABSOLUTE_RE.match(url)) or url.startswith("//")


def sanitize(html: str, url_filter: UrlFilter | None = None) -> str:
    """nh3 with our allow-lists. ``url_filter`` decides relative ``href``/``src`` values (a
    static site keeps only those that resolve inside it); external ones pass when their scheme
    is allowed, and nh3 drops the rest."""

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if attribute in ("href", "src"):
            stripped = value.strip()
            if stripped.startswith("#"):
                return stripped
            if is_external(stripped):
                scheme = urlsplit(stripped).scheme.lower()
                return stripped if scheme in URL_SCHEMES else None
            if url_filter is None:
                return None
            return url_filter(tag, stripped)
        return value

    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=attribute_filter,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def markdown_html(text: str, url_filter: UrlFilter | None = None) -> str:
    """Digest Markdown (Docusaurus flavour) as sanitized HTML."""
    return sanitize(_MARKDOWN.render(docusaurus_to_commonmark(text)), url_filter)


def text_html(text: str) -> str:
    """Extracted article text (plain text with paragraphs) as sanitized HTML paragraphs."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text or "") if p.strip()]
    html = "".join("<p>" + _escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)
    return sanitize(html)


def safe_href(url: str | None) -> str | None:
    """A URL fit for an ``href`` in our own templates: http(s) or mailto only, else None."""
    if not url:
        return None
    text = url.strip()
    if not is_external(text):
        return None
    return text if urlsplit(text).scheme.lower() in URL_SCHEMES else None


# --- search tokens ---------------------------------------------------------------------------
#
# The browser-side tokenizer in static/site/search.js is this one, line for line: NFKC, lower
# case, runs of CJK characters become overlapping bigrams (a lone character stays a unigram),
# runs of Latin letters and digits become words. The same regex source is used on both sides.

CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
WORD_CLASS = "a-z0-9\u00c0-\u024f"
TOKEN_PATTERN = f"[{CJK_CLASS}]+|[{WORD_CLASS}]+"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_CJK_RE = re.compile(f"^[{CJK_CLASS}]")


def tokens(text: str) -> list[str]:
    """Search tokens of ``text``, in order, repeats kept."""
    normal = unicodedata.normalize("NFKC", text or "").lower()
    out: list[str] = []
    for run in _TOKEN_RE.findall(normal):
        if _CJK_RE.match(run):
            if len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            out.append(run)
    return out
