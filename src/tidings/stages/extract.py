"""Bytes of a page -> text, then the article in it: title, author, date, body text, language.

Decoding trusts evidence over declarations: many saved Chinese pages carry a charset label that
does not match their bytes. Extraction is trafilatura plus a few table-driven site adapters for the
sites our users read, where trafilatura picks the wrong title or misses the body."""

from __future__ import annotations

import codecs
import copy
import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import charset_normalizer
from lxml import etree
from lxml.html import HtmlElement, tostring
from trafilatura import bare_extraction, load_html
from trafilatura.settings import Extractor

from .. import records
from ..errors import ExtractError
from ..textutil import NFKC_SAFE_RANGES, NFKC_SAFE_RE, nfkc


@dataclass
class Extracted(records.Extracted):
    """What extraction found, plus how sure it is of the title.

    ``title_derived`` is True when the page names no title and the title is the start of the text:
    a reader can tell the two apart, and a caller may prefer a better one (a feed entry's title)."""

    title_derived: bool = False

# Labels that name GB2312 or GBK are decoded as GB18030: it is a strict superset, and pages labelled
# GB2312 routinely use GBK-only characters (and browsers do the same).
_GB_LABELS = {"gb2312", "gb_2312", "gb_2312-80", "gbk", "x-gbk", "cp936", "ms936", "windows-936",
              "csgb2312", "euc-cn", "x-euc-cn", "chinese", "iso-ir-58", "gb18030"}
# WHATWG: a page labelled Latin-1 or ASCII is really windows-1252.
_CP1252_LABELS = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "ascii", "us-ascii", "cp819",
                  "ibm819", "iso_8859-1", "windows-1252"}

_SNIFF_BYTES = 8192
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def _codec(label: str | None) -> str | None:
    """A Python codec name for a charset label, or None when the label is unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in _GB_LABELS:
        return "gb18030"
    if label in _CP1252_LABELS:
        return "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _declared_charsets(content: bytes, content_type: str | None) -> list[str]:
    found: list[str] = []
    if content_type:
        header = _HEADER_CHARSET.search(content_type)
        if header and (codec := _codec(header.group(1))):
            found.append(codec)
    for meta in _META_CHARSET.finditer(content[:_SNIFF_BYTES]):
        codec = _codec(meta.group(1).decode("ascii", "ignore"))
        if codec and codec not in found:
            found.append(codec)
    return found


def _utf8_or_none(content: bytes) -> str | None:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A body cut short by a size cap or a broken save may end inside a character: still UTF-8.
        if exc.start >= len(content) - 3 and exc.reason == "unexpected end of data":
            return content[: exc.start].decode("utf-8", "strict")
        return None


def decode_html(content: bytes, content_type: str | None = None) -> str:
    """Decode a page: BOM, then valid UTF-8, then the declared charset, then detection."""
    for bom, codec in _BOMS:
        if content.startswith(bom):
            return content[len(bom):].decode(codec, "replace")
    text = _utf8_or_none(content)
    if text is not None:
        # Valid UTF-8 beats any label: non-UTF-8 text of any length almost never validates as UTF-8.
        return text
    declared = _declared_charsets(content, content_type)
    for codec in declared:
        if codec == "utf-8":
            continue  # already proven wrong above
        try:
            return content.decode(codec)
        except UnicodeDecodeError:
            continue
    best = charset_normalizer.from_bytes(content).best()
    if best is not None and best.encoding:
        codec = _codec(best.encoding) or best.encoding
        return content.decode(codec, "replace")
    if "utf-8" in declared or not declared:
        return content.decode("utf-8", "replace")
    return content.decode(declared[0], "replace")


# ----------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------

# Types that are never a page, whatever the bytes look like.
_BINARY_TYPES = ("image/", "audio/", "video/", "font/", "application/pdf", "application/zip",
                 "application/gzip", "application/x-gzip", "application/msword", "application/vnd.",
                 "application/x-tar", "application/x-7z", "application/x-rar", "application/wasm")
_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"GIF87a", b"GIF89a", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b",
                 b"OggS", b"fLaC", b"wOFF", b"wOF2", b"\x7fELF", b"7z\xbc\xaf", b"Rar!")
_PLAIN_TYPES = ("text/plain", "text/markdown", "text/x-markdown")


class NoArticleError(ExtractError):
    """The page is readable but holds no article (an error page, a home page, a list of links).

    Carries what the page calls itself, so a caller can still show "稀土掘金" with the reason."""

    def __init__(self, url: str, message: str, *, title: str | None = None,
                 site_name: str | None = None) -> None:
        super().__init__(url, "no_article", message)
        self.title = title
        self.site_name = site_name


def _looks_binary(content: bytes, content_type: str | None) -> bool:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime.startswith(_BINARY_TYPES) and not mime.startswith("image/svg"):
        return True
    head = content[:16]
    if head.startswith(_BINARY_MAGIC) or head[4:8] == b"ftyp" or (
        head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE", b"AVI ")
    ):
        return True
    # NUL never occurs in HTML text; UTF-16 pages (full of NULs) carry a BOM and are decoded as such.
    return b"\x00" in content[:8192] and not content.startswith(
        (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
    )


# --- small lxml helpers -------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_BLOCK_TAGS = {"p", "div", "section", "article", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "pre",
               "blockquote", "table", "tr", "hr", "figure", "figcaption", "dd", "dt", "dl", "header", "footer",
               "main", "aside", "nav", "address", "details", "summary"}
_NOISE_XPATH = "//script|//style|//noscript|//template|//svg|//iframe"
# Line-number gutters of code highlighters (SyntaxHighlighter, highlight.js, Prism, CSDN): as text
# they are a run of "1 2 3 ... 127" in front of the code.
_GUTTER_XPATH = ("//td[contains(concat(' ', @class, ' '), ' gutter ')] | //*[contains(@class,'line-numbers-rows')]"
                 " | //*[contains(@class,'hljs-ln-numbers')] | //ul[contains(@class,'pre-numbering')]")
# Dialogs, menus and pop-ups a stylesheet keeps hidden until asked for: a keyboard-shortcut help
# (mdBook's "Press ← or → to navigate between chapters"), a theme picker, a newsletter or login box.
# As text they read like prose, and on a page with little text of its own they became its summary.
_POPUP_XPATH = ("//dialog | //*[@role='dialog' or @role='alertdialog' or @aria-modal='true' or @role='menu']"
                " | //*[self::div or self::section or self::aside or self::ul or self::ol or self::nav]"
                "[contains(translate(@id, 'POPUP', 'popup'), 'popup') or contains(translate(@class, 'POPUP', 'popup'), 'popup')]"
                # a container named so ("no-popup", "popup-gallery") that holds the article is not chrome
                "[not(.//article or .//main or .//h1)]"
                # A menu bar or toolbar: mdBook's carries the book's name as an <h1> ("The Embedded Rust
                # Book"), which led the text and the summary of every chapter with little text of its own.
                " | //*[self::div or self::nav or self::header][@role='toolbar' or @role='menubar'"
                " or contains(concat(' ', translate(@class, 'MENUBAR', 'menubar'), ' '), ' menu-bar ')"
                " or contains(concat(' ', translate(@class, 'MENUBAR', 'menubar'), ' '), ' menubar ')]"
                "[not(.//article or .//main)]")


_NOISE_IN = "." + _NOISE_XPATH.replace("|//", "|.//")  # the noise inside one element


@functools.lru_cache(maxsize=512)
def _xpath(expr: str) -> etree.XPath:
    """``expr`` compiled once: calling it on an element gives what ``element.xpath(expr)`` gives,
    without parsing the expression again for every page (a third of the cost of the small ones).
    lxml serialises calls of one XPath object across threads."""
    return etree.XPath(expr)


def _clean(text: str | None) -> str:
    return _WS.sub(" ", text or "").strip()


def _norm(text: str | None) -> str:
    """The comparison form of a title: NFKC, no whitespace, lower case (as the acceptance check does)."""
    return "".join(nfkc(text or "").split()).lower()


def _xpath_values(tree: HtmlElement, expr: str) -> list[str]:
    try:
        found = _xpath(expr)(tree)
    except etree.XPathError:
        return []
    if not isinstance(found, list):
        found = [found]
    values = []
    for item in found:
        value = item.text_content() if isinstance(item, HtmlElement) else str(item)
        if value := _clean(value):
            values.append(value)
    return values


def _first(tree: HtmlElement, html: str, rules: tuple[str, ...]) -> str | None:
    """The first non-empty value of an ordered list of rules: XPaths, or ``re:`` patterns over the raw
    HTML (inline-script variables) whose group ``v`` is the value."""
    for rule in rules:
        if rule.startswith("re:"):
            match = re.search(rule[3:], html)
            value = _clean(unescape(match.group("v"))) if match else ""
        else:
            values = _xpath_values(tree, rule)
            value = values[0] if values else ""
        if value:
            return value
    return None


def _block_text(element: HtmlElement) -> str:
    """Plain text of an element, one line per block, for bodies trafilatura trims too hard."""
    element = copy.deepcopy(element)
    for noise in _xpath(_NOISE_IN)(element):
        noise.drop_tree()
    for el in element.iter():
        if not isinstance(el.tag, str):
            continue
        if el.tag in _BLOCK_TAGS or el.tag == "br":
            el.tail = "\n" + (el.tail or "")
            if el.tag != "br":
                el.text = "\n" + (el.text or "")
    lines = (re.sub(r"[ \t\u3000\xa0]+", " ", line).strip() for line in element.text_content().splitlines())
    return "\n".join(line for line in lines if line)


# Characters NFKC treats one at a time (see textutil.NFKC_SAFE_RANGES): NFKC of a text made of them
# is the NFKC of each character in turn, whatever stands around it (a line break between blocks too).
_SAFE_RANGES = NFKC_SAFE_RANGES
_SAFE_FOR_BREAKS = NFKC_SAFE_RE
_SPACE_RUNS = re.compile(r"\s+")  # \s is str.isspace(), the white space str.split() drops
_odd_chars: tuple[re.Pattern[str], dict[str, int]] | None = None


def _odd() -> tuple[re.Pattern[str], dict[str, int]]:
    """The safe characters whose normal form is not one character (nor none, for white space):
    "…" is "...", "½" is "1⁄2", "İ" lower-cases to two. Found once per process (some 20 ms)."""
    global _odd_chars
    if _odd_chars is None:
        odd: dict[str, int] = {}
        for char in (chr(c) for first, last in _SAFE_RANGES for c in range(first, last + 1)):
            extra = len(_norm(char)) - (0 if char.isspace() else 1)
            if extra:
                odd[char] = extra
        _odd_chars = (re.compile("[" + "".join(re.escape(c) for c in odd) + "]"), odd)
    return _odd_chars


def _norm_len(text: str) -> int:
    """``len(_norm(text))`` without normalising a text made of safe characters (nearly every page):
    then it is the count of characters that are not white space, corrected for the few whose normal
    form is longer or shorter. NFKC of a whole Chinese text costs ten times that."""
    if not _SAFE_FOR_BREAKS.fullmatch(text):
        return len(_norm(text))
    pattern, odd = _odd()
    spaces = sum(map(len, _SPACE_RUNS.findall(text)))
    return len(text) - spaces + sum(odd[c] for c in pattern.findall(text))


class _Page:
    """The measures of one parsed page that the readability and navigation checks ask for, each
    computed once: the link texts, the visible body text without scripts, and the normal forms of
    the lines of a text (trafilatura's is measured up to four times).

    Lengths are ``len(_norm(...))`` exactly. Line by line is the same sum as the whole text: NFKC never
    composes across a line break, and _norm drops the breaks (tests/test_extract.py checks it)."""

    def __init__(self, tree: HtmlElement) -> None:
        self.tree = tree
        body = tree.find(".//body")
        self.body: HtmlElement = body if body is not None else tree
        self._links: set[str] | None = None
        self._density: tuple[float, int, str] | None = None
        self._block_visible: int | None = None
        self._lines: dict[str, tuple[int, list[str]]] = {}

    def links(self) -> set[str]:
        """Normal forms of the texts of every link on the page."""
        if self._links is None:
            self._links = {_norm(a.text_content()) for a in self.tree.iter("a")}
        return self._links

    def lines(self, text: str) -> tuple[int, list[str]]:
        """``len(_norm(text))`` and the normal forms of the text's lines."""
        if text not in self._lines:
            norms = [_norm(line) for line in text.splitlines()]
            self._lines[text] = (sum(len(n) for n in norms), norms)
        return self._lines[text]

    def density(self) -> tuple[float, int]:
        """Share of the visible body text that sits inside links, and the length of that text."""
        if self._density is None:
            body = copy.deepcopy(self.body)
            for noise in _xpath(_NOISE_IN)(body):
                noise.drop_tree()
            content = body.text_content()
            total = _norm_len(content)
            linked = sum(_norm_len(a.text_content()) for a in body.iter("a"))
            self._density = ((linked / total if total else 0.0), total, content)
        return self._density[:2]

    def block_visible(self) -> int:
        """``len(_norm(_block_text(body)))``: the visible text as the readability check measures it.

        Block text is the plain text with line breaks added between blocks, and _norm drops breaks:
        unless a character that may compose with the one before it follows a block boundary, it is
        the length :meth:`density` has already measured."""
        if self._block_visible is None:
            self.density()
            assert self._density is not None
            if _SAFE_FOR_BREAKS.fullmatch(self._density[2]):
                self._block_visible = self._density[1]
            else:
                self._block_visible = _norm_len(_block_text(self.body))
        return self._block_visible

    def linked_share(self, text: str) -> float:
        """Share of an extracted text made of lines that are the text of some link on the page."""
        links = self.links()
        lines = [n for n in (norm.lstrip("-*") for norm in self.lines(text)[1]) if n]
        total = sum(len(n) for n in lines)
        return sum(len(n) for n in lines if n in links) / total if total else 0.0


def _as_page(page: _Page | HtmlElement) -> _Page:
    return page if isinstance(page, _Page) else _Page(page)


def _parse(html: str) -> HtmlElement | None:
    # trafilatura's loader rejects bare fragments ("a div of an article"): give them a document.
    if not re.search(r"<(?:html|head|body)[\s>]", html[:20000], re.I):
        html = f"<html><body>{html}</body></html>"
    return load_html(html)


# --- site adapters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    """Where one site keeps its article. Rules are tried in order; the first value found wins."""

    name: str
    hosts: tuple[str, ...]  # the host, or any parent domain of it
    marks: str  # XPath that recognises the site by its markup alone (saved files have no host)
    title: tuple[str, ...] = ()
    author: tuple[str, ...] = ()
    date: tuple[str, ...] = ()
    body: tuple[str, ...] = ()  # XPaths; the first that matches is the body (all its matches, in order)
    site_name: str | None = None
    body_required: bool = False  # a page of this site without a body is an error page, not an article
    no_body_message: tuple[str, ...] = ()  # where such an error page says what is wrong


_Q = r"""(?P<q>['"])(?P<v>.+?)(?P=q)"""  # a quoted JavaScript string literal

SITES: tuple[_Site, ...] = (
    _Site(
        name="wechat",
        hosts=("mp.weixin.qq.com",),
        marks="//*[@id='js_content'] | //meta[@property='og:site_name'][@content='微信公众平台']"
        " | //link[contains(@href,'res.wx.qq.com/mmbizwap')] | //script[contains(@src,'res.wx.qq.com/mmbizwap')]",
        # <title> is empty in the served page: JavaScript fills it in from msg_title.
        title=("//meta[@property='og:title']/@content", r"re:var msg_title = " + _Q,
               "//*[@id='activity-name']"),
        author=("//*[@id='js_name']", "//*[@id='post-user']", "//*[contains(@class,'profile_nickname')]",
                r"re:var nickname = (?:htmlDecode\()?" + _Q),
        date=(r're:var ct = "(?P<v>\d{9,11})"', r're:var publish_time = "(?P<v>\d{4}-\d\d-\d\d)"'),
        body=("//*[@id='js_content']",),
        site_name="微信公众平台",
        body_required=True,
        no_body_message=("//*[contains(@class,'weui-msg__title')]", "//*[contains(@class,'weui-msg__desc')]"),
    ),
    _Site(
        name="juejin",
        hosts=("juejin.cn", "juejin.im"),
        marks="//meta[@itemprop='name'][@content='掘金'] | //*[contains(@class,'article-viewer')]"
        " | //meta[@name='apple-mobile-web-app-title'][@content='掘金']",
        # <title> glues the title and the start of the summary together.
        title=("//h1[contains(@class,'article-title')]", "//meta[@itemprop='headline']/@content"),
        author=("//*[contains(@class,'author-name')]//*[contains(@class,'name')]",
                "//*[@itemprop='author']/meta[@itemprop='name']/@content"),
        date=("//meta[@itemprop='datePublished']/@content",),
        body=("//*[contains(@class,'article-viewer')]", "//*[@itemprop='articleBody']"),
        site_name="稀土掘金",
    ),
    _Site(
        name="csdn",
        hosts=("csdn.net",),
        marks="//*[@id='content_views'] | //h1[contains(@class,'title-article')]",
        # <title> may be an older or SEO title ("Kruskal+LCA算法详解-CSDN博客"): the heading is what readers see.
        title=("//h1[contains(@class,'title-article')]", r"re:var articleTitle\s*=\s*" + _Q),
        author=(r"re:var nickName\s*=\s*" + _Q, "//*[contains(@class,'follow-nickName')]"),
        body=("//*[@id='content_views']",),
        site_name="CSDN",
    ),
    _Site(
        name="cnblogs",
        hosts=("cnblogs.com",),
        marks="//*[@id='cnblogs_post_body'] | //a[@id='cb_post_title_url']",
        # The blog's name is an earlier <h1>; the post title is this link.
        title=("//a[@id='cb_post_title_url']", "//*[contains(@class,'postTitle')]"),
        author=("//a[@id='Header1_HeaderTitle']",),
        body=("//*[@id='cnblogs_post_body']",),
        site_name="博客园",
    ),
    _Site(
        name="zhihu",
        hosts=("zhihu.com",),
        marks="//h1[contains(@class,'Post-Title') or contains(@class,'QuestionHeader-title')]"
        " | //meta[@property='og:site_name'][starts-with(@content,'知乎')]",
        title=("//h1[contains(@class,'Post-Title')]", "//h1[contains(@class,'QuestionHeader-title')]",
               "//meta[@property='og:title']/@content"),
        author=("//*[contains(@class,'Post-Author')]//meta[@itemprop='name']/@content",
                "//*[contains(@class,'AuthorInfo')]//meta[@itemprop='name']/@content"),
        body=("//div[contains(@class,'Post-RichText')]", "//div[contains(@class,'RichContent-inner')]"),
        site_name="知乎",
    ),
)


def _host(url: str | None) -> str:
    if not url or "://" not in url:
        return ""
    return (urlsplit(url).hostname or "").lower().rstrip(".")


def _page_url(url: str | None, tree: HtmlElement, html: str) -> str | None:
    """The page's web address: the one given, else what a saved file says about itself."""
    if _host(url):
        return url
    hints = _xpath_values(tree, "//link[@rel='canonical']/@href") + _xpath_values(
        tree, "//meta[@property='og:url']/@content")
    # Browsers' "save page" and some archivers leave <!-- saved from url=(0018)https://juejin.cn/ -->.
    saved = re.search(r"<!--\s*(?:saved from url=\(\d+\))?\s*(https?://[^\s>]+?)\s*-->", html[:2048])
    if saved:
        hints.append(saved.group(1))
    return next((h for h in hints if _host(h)), None)


def _site_for(host: str, tree: HtmlElement) -> _Site | None:
    for site in SITES:
        if any(host == h or host.endswith("." + h) for h in site.hosts):
            return site
    for site in SITES:
        if _xpath(site.marks)(tree):
            return site
    return None


def _site_body(site: _Site, tree: HtmlElement) -> list[HtmlElement]:
    for rule in site.body:
        found = [el for el in _xpath(rule)(tree) if isinstance(el, HtmlElement)]
        # Keep outermost matches only, so nested matches are not read twice.
        outer = [el for el in found if not any(anc in found for anc in el.iterancestors())]
        if outer:
            return outer
    return []


# --- title, date, text ---------------------------------------------------------------------------

_BYLINE = re.compile(r"^(?:view all posts by|posts by|posted by|written by|by|作者\s*[:：]?)\s+", re.I)
# "_" separates "标题_科技_腾讯网" and "技巧!_前端小智-CSDN博客", but not the parts of an identifier
# ("no_std - The Embedded Rust Book", "static_mut_refs"): between two ASCII word characters it is one.
_TITLE_SEP = re.compile(r"\s+[-–—|·»]\s+|\s*[|｜]\s*|\s+_\s*|\s*_\s+|(?<![A-Za-z0-9_])_|_(?![A-Za-z0-9_])")


def _title_parts(title: str) -> list[str]:
    return [p for p in (_clean(x) for x in _TITLE_SEP.split(title)) if p]


def _site_part(parts: list[str], site_names: set[str]) -> int | None:
    """Which end of a split <title> names the site: one that matches a known site name, else the last
    ("Title - Site" is by far the commonest order)."""
    if len(parts) < 2:
        return None
    return 0 if _norm(parts[0]) in site_names and _norm(parts[-1]) not in site_names else -1


def _generic_title(found: str | None, tree: HtmlElement, site_names: set[str]) -> str | None:
    """Correct trafilatura's title with what the page shows: its <title> and its headings.

    ``site_names`` are the names the page declares (og:site_name, application-name, a site
    adapter): only they may move the site's part of <title> to the front. trafilatura's own guess
    at the site name is not among them: on book-like pages it takes the chapter's title for the
    site's ("Publishing a Crate to Crates.io - The Rust Programming Language")."""
    page_title = _first(tree, "", ("//head/title", "//title"))
    og_title = _first(tree, "", ("//meta[@property='og:title']/@content", "//meta[@name='twitter:title']/@content"))
    h1s = _xpath_values(tree, "//body//h1")
    if not (page_title or og_title or h1s or _xpath_values(tree, "//*[@itemprop='headline']")):
        # A fragment (no head, no h1): its first sub-heading is a section, not the title.
        return None
    if not page_title:
        return found or og_title or h1s[0]
    parts = _title_parts(page_title)
    site = _site_part(parts, site_names)
    main_parts = parts if site is None else (parts[1:] if site == 0 else parts[:-1])
    main = _norm("".join(main_parts))
    # A heading that says what <title> says, less the site's name, is the title the reader sees
    # (og:title and JSON-LD are often an editor's variant of it; a lone <h1> is often the site's name).
    headings = [h for h in h1s + _xpath_values(tree, "//body//h2") + _xpath_values(tree, "//body//h3")
                if len(h) <= 300]
    for heading in headings:
        h = _norm(heading)
        if h and (h == main or (h in main and len(h) >= 0.6 * len(main))
                  or (main in h and len(main) >= 0.6 * len(h))):
            return heading
    if found and site is not None and _norm(found) == _norm(parts[site]):
        return " - ".join(main_parts)  # trafilatura took the site's name
    if found and site is not None and _norm(found) not in main and _norm(found) not in {_norm(h) for h in h1s}:
        # trafilatura took a heading the <title> does not name (a help dialog's "Keyboard shortcuts",
        # a sidebar's): the <title>, less the site's name, is what the reader sees in the tab.
        return " - ".join(main_parts)
    return found or og_title or page_title


def _strip_site_suffix(title: str, names: set[str]) -> str:
    """Drop a trailing or leading " - Site Name" when it names the site."""
    parts = _title_parts(title)
    if len(parts) > 1 and names:
        if _norm(parts[-1]) in names:
            return _TITLE_SEP.split(title)[0] if len(parts) == 2 else title[: title.rfind(parts[-1])].rstrip(" -–—|_·»｜")
        if _norm(parts[0]) in names:
            return title[title.find(parts[0]) + len(parts[0]):].lstrip(" -–—|_·»｜")
    return title


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    value = value.strip()
    try:
        if value.isdigit():
            return datetime.fromtimestamp(int(value), tz=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    # Dates without a zone are taken as UTC, so that every published_at compares with every other.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=2)
def _extractor(recall: bool) -> Extractor:
    """trafilatura's options for our calls, made once: building them reads its configuration anew,
    some 5 % of an extraction. Each call gets a copy with its own address and date limit."""
    return Extractor(
        output_format="python", fast=True, recall=recall, comments=False, tables=True, dedup=False,
        with_metadata=True,
        # htmldate's extensive search runs dateparser over the whole page: seconds per page, and
        # mostly guesses (a fragment "dated" 2015-01-01). Meta tags and visible dates suffice.
        date_params={"original_date": True, "extensive_search": False, "max_date": "9999-12-31"},
    )


def _traf(tree: HtmlElement, url: str | None, *, recall: bool = False) -> Any:
    # No copy of the tree here: bare_extraction copies a tree it is given before it changes anything.
    # fast: no fallback inside trafilatura (its own readability/jusText run on every page, a quarter of
    # its cost). Our readability second opinion covers the doubtful pages; on the whole shared corpus the
    # texts differ only in line breaks inside two WeChat paragraphs, and evals/extraction.py is unchanged.
    options = copy.copy(_extractor(recall))
    # What Extractor(url=...) sets from the address, and a date limit of today.
    options.url = url
    options.source = url and url.encode("utf-8", "replace").decode("utf-8")
    options.date_params = {**options.date_params, "max_date": datetime.now(UTC).strftime("%Y-%m-%d")}
    try:
        return bare_extraction(tree, url=url, options=options)
    except (ValueError, TypeError, etree.LxmlError):
        return None


def _body_text(elements: list[HtmlElement], url: str | None) -> str:
    """Text of the adapter's body: trafilatura's cleaning when it keeps most of it, else every block."""
    texts = []
    for element in elements:
        raw = _block_text(element)
        doc = _traf(load_html(f"<html><body>{tostring(element, encoding='unicode')}</body></html>"), url,
                    recall=True)
        cleaned = (doc.text or "") if doc is not None else ""
        # trafilatura drops short lines, captions and hidden blocks, which in WeChat posts can be most
        # of the article, and flattens code laid out in table cells into one line; then the plain block
        # text is the better record.
        lost_text = len(_norm(cleaned)) < 0.6 * len(_norm(raw))
        lost_lines = cleaned.count("\n") < 0.5 * raw.count("\n")
        texts.append(raw if lost_text or lost_lines else cleaned)
    return "\n\n".join(t for t in texts if t.strip())


def _plain_text(text: str, url: str) -> Extracted:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ExtractError(url, "empty", "the file holds no text")
    first = lines[0].lstrip("#").strip()
    title = first if len(first) <= 200 else None
    return Extracted(title=title, text=text.strip(), language=detect_language(text))


_REFRESH_URL = re.compile(r"^\s*\d*\s*[;,]?\s*url\s*=\s*['\"]?([^'\"\s]+)", re.I)


def _refresh_target(tree: HtmlElement) -> str | None:
    """Where a stub page sends the reader with ``<meta http-equiv="refresh" content="0; url=…">``, when
    the page itself says next to nothing (a moved chapter's "Redirecting…"). A long page with a refresh
    tag (a news page that reloads itself) is still read as an article."""
    for content in tree.xpath("//meta[translate(@http-equiv, 'REFSH', 'refsh')='refresh']/@content"):
        match = _REFRESH_URL.match(str(content))
        if match is None:
            continue
        visible = tree.xpath("//body//text()[not(ancestor::script) and not(ancestor::style)]")
        said = " ".join(" ".join(str(t) for t in visible).split())
        if len(said) < 200:
            return match.group(1)
    return None


def extract(content: bytes | str, url: str | None = None, content_type: str | None = None, *,
            use_readability: bool = True) -> Extracted:
    """Find the article in a page. Raises ExtractError: ``empty``, ``binary`` or ``no_article``
    (the last as NoArticleError, which carries the page's own title).

    ``use_readability=False`` keeps to trafilatura and the site adapters (the evaluation's baseline)."""
    where = url or "<page>"
    if isinstance(content, bytes):
        if not content.strip():
            raise ExtractError(where, "empty", "the page is empty")
        if _looks_binary(content, content_type):
            raise ExtractError(where, "binary", f"not a web page ({content_type or 'binary content'})")
        html = decode_html(content, content_type)
    else:
        html = content
    html = html.replace("\x00", "")
    if not html.strip():
        raise ExtractError(where, "empty", "the page is empty")
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in _PLAIN_TYPES and not re.match(r"\s*<", html):
        return _plain_text(html, where)

    tree = _parse(html)
    if tree is None:
        raise ExtractError(where, "no_article", "not an HTML page")
    for chrome in (*_xpath(_GUTTER_XPATH)(tree), *_xpath(_POPUP_XPATH)(tree)):
        if chrome.getparent() is not None:  # not inside one dropped already
            chrome.drop_tree()
    moved_to = _refresh_target(tree)
    if moved_to is not None:
        raise NoArticleError(where, f"a redirect page: it sends the reader on to {moved_to}",
                             title=_first(tree, html, ("//title",)))
    page_url = _page_url(url, tree, html)
    site = _site_for(_host(page_url), tree)

    doc = _traf(tree, page_url)
    site_name = (site.site_name if site else None) or (doc.sitename if doc is not None else None)
    declared = {_norm(n) for n in (
        site.site_name if site else None,
        *_xpath_values(tree, "//meta[@property='og:site_name']/@content | //meta[@name='application-name']/@content"),
    ) if n}
    site_names = declared | ({_norm(doc.sitename)} if doc is not None and doc.sitename else set())
    title = _first(tree, html, site.title) if site else None
    if not title:
        title = _generic_title(doc.title if doc is not None else None, tree, declared)
    if title:
        title = _strip_site_suffix(title, site_names)
    if title and _is_address(title):
        title = None  # a saved page's <title> may be its own URL or file name: not a title

    body = _site_body(site, tree) if site else []
    if site and site.body_required and not body:
        says = _first(tree, html, site.no_body_message)
        raise NoArticleError(where, f"{site.name} page without an article" + (f": {says}" if says else ""),
                             title=title or says, site_name=site_name)
    kept = None  # len(_norm(text)), when there is no site body to keep whatever its length
    if body:
        text = _body_text(body, page_url)
    else:
        page = _Page(tree)
        text = _generic_text((doc.text or "") if doc is not None else "", page, html, use_readability)
        density, visible = page.density()
        if visible < 20:
            raise NoArticleError(where, "no article: the page has no text", title=title, site_name=site_name)
        # A home page or an index is mostly links, and what trafilatura keeps of it is link texts: the
        # navigation, not an article. (An article inside heavy chrome keeps a long text of prose.)
        if density >= 0.7 and (page.lines(text)[0] < 500 or page.linked_share(text) >= 0.5):
            raise NoArticleError(where, f"no article: the page is {density:.0%} links (navigation or an index)",
                                 title=title, site_name=site_name)
        kept = page.lines(text)[0]  # stripping white space below leaves the normal form as it is
    text = text.strip()
    if kept is not None and kept < 20:  # (only a site's body comes without a length: body implies site)
        raise NoArticleError(where, "no article: the page has (almost) no text", title=title, site_name=site_name)

    derived = False
    if not title:
        # Every article gets a title a reader accepts: its first heading, else its first sentence
        # (marked as derived). Never the address: callers used to fall back to the URL or file path.
        page_body = tree.find(".//body")
        title = _heading_title(body or [page_body if page_body is not None else tree])
        if not title:
            title, derived = _sentence_title(text), True

    author = _first(tree, html, site.author) if site else None
    if not author and doc is not None and doc.author:
        author = _BYLINE.sub("", doc.author).strip()
    published = _parse_date(_first(tree, html, site.date)) if site else None
    if published is None and doc is not None:
        published = _parse_date(doc.date)
    return Extracted(
        title=title or None,
        text=text,
        author=author or None,
        published_at=published,
        language=detect_language(f"{title or ''}\n{text}"),
        site_name=site_name or None,
        title_derived=derived and bool(title),
    )


# --- a second extractor: readability -------------------------------------------------------------
#
# trafilatura is precise but, on some English article pages, keeps only part of the article (it
# drops sections it takes for boilerplate) or keeps the chrome. readability-lxml scores the DOM for the
# one densest block of prose and is the better of the two there. It runs only when trafilatura's
# result looks doubtful, so most pages pay nothing for it (and site adapters come first anyway).


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment, one line per block (for readability's summary)."""
    tree = _parse(html)
    if tree is None:
        return ""
    body = tree.find(".//body")
    return _block_text(body if body is not None else tree)


def _readability_text(html: str) -> str:
    try:
        from readability import Document
        from readability.readability import Unparseable
    except ImportError:  # an install without the optional second extractor: trafilatura alone
        return ""
    try:
        return html_to_text(Document(html).summary(html_partial=True))
    except (Unparseable, ValueError, TypeError, etree.LxmlError):
        return ""


def _doubtful(text: str, tree: _Page | HtmlElement) -> bool:
    """Is trafilatura's text worth a second opinion? Cheap signals only, so that clean pages skip it."""
    page = _as_page(tree)
    visible = page.block_visible()
    kept = page.lines(text)[0]
    # Kept clearly less than the page shows (part of the article may be lost: on a page with no
    # chrome, trafilatura drops short lines and headings), or kept link texts.
    return kept < 0.85 * visible or page.linked_share(text) >= 0.2


def _choose(traf: str, read: str, tree: _Page | HtmlElement) -> str:
    """trafilatura's text, unless readability's is clearly the article and trafilatura's is not.

    Prefer readability when it holds much more text that is not link texts (trafilatura lost part of
    the article), or as much text with far fewer link lines (trafilatura kept navigation)."""
    page = _as_page(tree)
    t_len, r_len = page.lines(traf)[0], page.lines(read)[0]
    if r_len < 200:
        return traf
    t_links, r_links = page.linked_share(traf), page.linked_share(read)
    if r_links > max(t_links, 0.15):
        return traf  # readability took a block of links
    if r_len >= 1.1 * t_len:
        return read
    if t_links >= 0.2 and r_links <= 0.5 * t_links and r_len >= 0.6 * t_len:
        return read
    return traf


def _generic_text(traf: str, page: _Page, html: str, use_readability: bool) -> str:
    if not use_readability or not _doubtful(traf, page):
        return traf
    return _choose(traf, _readability_text(html), page)


# --- titles for pages that name none -------------------------------------------------------------

_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+.-]*:/|www\.|[/~\\]|[a-z]:\\)|\.(?:s?html?|php|aspx?)$", re.I)
# "一、引子", "1.1 What is", "第二章", "(3)": numbered sections of an article, not its title.
_SECTION = re.compile(r"^\s*(?:[一二三四五六七八九十百]+\s*[、.．]|\d+(?:\.\d+)*\s*[、.．)）]?\s|"
                      r"第[一二三四五六七八九十百\d]+[章节部篇]|[（(]\s*[\d一二三四五六七八九十]+\s*[)）])")
_BYLINE_LINE = re.compile(r"^(?:作者|原文|来源|出处|转载|by)\s*[:：]|^(?:by|posted by|written by)\s", re.I)
_HAS_LINK = re.compile(r"[a-z][a-z0-9+.-]*://|www\.|\b[\w-]+\.(?:com|cn|org|net|io|dev)\b", re.I)
_SENTENCE_END = re.compile(r"[。！？!?；;]|\.(?:\s|$)")
_CJK_TITLE_CHARS = 60
_LATIN_TITLE_WORDS = 12


def _is_address(text: str) -> bool:
    return bool(_ADDRESS.search(text.strip())) and " " not in text.strip()


def _heading_title(elements: list[HtmlElement]) -> str | None:
    """The first h1-h3 of the article that reads as a title: not a numbered section, not too short."""
    for element in elements:
        for heading in element.iter("h1", "h2", "h3"):
            text = _clean(heading.text_content())
            if 4 <= len(_norm(text)) <= 150 and not _SECTION.match(text) and not _is_address(text):
                return text
    return None


def _sentence_title(text: str) -> str | None:
    """The first sentence of the text, cut to a title's length at a punctuation mark or a word."""
    for line in text.splitlines():
        line = _clean(line).lstrip("#>*-• ").strip()
        # Bylines and lines that point elsewhere ("体验地址：mdnice.com") introduce the article, they
        # do not say what it is about.
        if len(_norm(line)) < 6 or _BYLINE_LINE.match(line) or _is_address(line) or _HAS_LINK.search(line):
            continue
        end = _SENTENCE_END.search(line)
        sentence = line[: end.start()] if end and end.start() >= 4 else line
        return _shorten(sentence.strip(" ，,：:"))
    return None


def _shorten(sentence: str) -> str:
    if len(_HAN.findall(sentence)) >= len(_LATIN_WORD.findall(sentence)):
        if len(sentence) <= _CJK_TITLE_CHARS:
            return sentence
        head = sentence[:_CJK_TITLE_CHARS]
        # Cut after the last clause mark when there is one in the second half, else at the limit.
        cut = max(head.rfind(mark) for mark in "，、：,:")
        return (head[:cut] if cut >= _CJK_TITLE_CHARS // 2 else head).rstrip() + "…"
    words = sentence.split()
    if len(words) <= _LATIN_TITLE_WORDS:
        return sentence
    return " ".join(words[:_LATIN_TITLE_WORDS]).rstrip(",;:") + "…"


# --- language ------------------------------------------------------------------------------------

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
# The same classes as runs: counting the characters of a few runs beats a list of every character.
_HAN_RUN, _KANA_RUN, _HANGUL_RUN, _CYRILLIC_RUN = (re.compile(p.pattern + "+") for p in (_HAN, _KANA, _HANGUL, _CYRILLIC))


def _count(runs: re.Pattern[str], text: str) -> int:
    return sum(map(len, runs.findall(text)))
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]{2,}")
_STOPWORDS = {
    "en": {"the", "and", "of", "to", "is", "in", "that", "for", "with", "are", "this", "it", "on", "you"},
    "de": {"der", "die", "und", "das", "ist", "nicht", "ein", "eine", "mit", "von", "zu", "den", "auf", "sich"},
    "fr": {"le", "la", "les", "et", "est", "des", "une", "un", "du", "pour", "dans", "que", "pas", "sur"},
    "es": {"el", "los", "las", "es", "que", "del", "por", "una", "para", "con", "se", "como", "pero", "su"},
}


def detect_language(text: str) -> str:
    """A script-based guess: "zh", "ja", "ko", "ru", or for Latin script "en"/"de"/"fr"/"es" by their
    commonest words; "und" when there is nothing to go on."""
    sample = text[:20000]
    han, kana, hangul = _count(_HAN_RUN, sample), _count(_KANA_RUN, sample), _count(_HANGUL_RUN, sample)
    cyrillic = _count(_CYRILLIC_RUN, sample)
    words = _LATIN_WORD.findall(sample)
    # One Han character carries about as much as one Latin word, and Chinese tech writing is full of
    # English identifiers and code: compare characters with words, not letters.
    if hangul and hangul >= kana and hangul >= 0.3 * len(words):
        return "ko"
    if kana and kana >= 0.1 * (han + kana) and han + kana >= 0.3 * len(words):
        return "ja"
    if han and han >= 0.3 * len(words):
        return "zh"
    if cyrillic and cyrillic >= 2 * sum(len(w) for w in words):
        return "ru"
    if not words:
        return "zh" if han else "und"
    lowered = [w.lower() for w in words[:3000]]
    scores = {lang: sum(w in stop for w in lowered) for lang, stop in _STOPWORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    if han >= 10 and scores[best] < 0.05 * len(lowered):
        # Latin words but hardly a function word among them: code listings in a Chinese post.
        return "zh"
    return best if scores[best] > scores["en"] else "en"
