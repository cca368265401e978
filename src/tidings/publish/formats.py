"""More digest formats than Docusaurus: Hugo, Jekyll, plain Markdown and standalone HTML.

Each starts from the Docusaurus rendering (so edits, drops and moves show the same everywhere),
swaps the front matter for its own and turns Docusaurus-only syntax into portable Markdown:
``:::tip`` admonitions become block quotes, MDX ``import`` lines go, ``<!--truncate-->`` becomes
``<!--more-->``. ``RENDERERS`` is the one renderer registry, Docusaurus included; ``output_path``
gives each format's directory layout under ``--out``.

Text from fetched pages and LLMs is escaped once, where entries are rendered
(``publish.escape_markdown``), so it reaches every format as plain text: no raw HTML, JSX,
Hugo shortcodes or excerpt markers from a page."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..htmltext import markdown_html
from ..records import DigestDoc, DigestEntry
from ..sources.digest import split_front_matter
from ..textutil import slugify
from .docusaurus import escape_markdown, render_docusaurus, write_if_changed, yaml_value

_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_ADMONITION_OPEN_RE = re.compile(r"^[ \t]*:::[ \t]*([A-Za-z]+)[ \t]*(.*?)[ \t]*$")
_ADMONITION_CLOSE_RE = re.compile(r"^[ \t]*:::[ \t]*$")
_MDX_IMPORT_RE = re.compile(r"""^import\s+(?:[\w{}*,\s]+\s+from\s+)?['"][^'"]+['"];?\s*$""")
_TRUNCATE_RE = re.compile(r"<!--\s*truncate\s*-->")


def _body(doc: DigestDoc, template_dir: str | Path | None) -> str:

    _raw, body, _meta = split_front_matter(render_docusaurus(doc, template_dir))
    return body


def portable_markdown(body: str) -> str:
    """Docusaurus Markdown as Markdown any CommonMark site generator reads the same way."""
    out: list[str] = []
    fence: str | None = None
    quote_depth = 0
    for line in body.split("\n"):
        prefix = "> " * quote_depth
        match = _FENCE_RE.match(line)
        if fence is not None:
            out.append((prefix + line).rstrip() if quote_depth else line)
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        if match:
            fence = match.group(1)
            out.append((prefix + line).rstrip() if quote_depth else line)
            continue
        opened = _ADMONITION_OPEN_RE.match(line)
        if opened:
            kind, title = opened.group(1), opened.group(2)
            out.append(f"{prefix}> **{title or kind.capitalize()}**".rstrip())
            out.append(f"{prefix}>")
            quote_depth += 1
            continue
        if quote_depth and _ADMONITION_CLOSE_RE.match(line):
            quote_depth -= 1
            continue
        if _MDX_IMPORT_RE.match(line):
            continue
        line = _TRUNCATE_RE.sub("<!--more-->", line)
        out.append((prefix + line).rstrip() if quote_depth else line)
    return "\n".join(out)


def _title(doc: DigestDoc) -> str:
    title = doc.meta.get("title")
    if title:
        return str(title)
    return doc.week.isoformat() if doc.week else "digest"


def _categories(doc: DigestDoc) -> list[str]:
    """The sections that show at least one kept entry, in the digest's order."""
    present = {e.section for e in doc.blocks if isinstance(e, DigestEntry) and e.kept and e.section}
    ordered = [s for s in doc.sections if s in present]
    return ordered + sorted(present - set(ordered))


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _front_matter(pairs: list[tuple[str, Any]]) -> str:

    lines = ["---"]
    for key, value in pairs:
        lines.append(f"{key}: {yaml_value(value)}")
    lines.append("---")
    return "\n".join(lines) + "\n"


def _week_of(doc: DigestDoc) -> date:
    if doc.week is None:
        raise UsageError("this digest has no week date, so it has no post date")
    return doc.week


def _draft(doc: DigestDoc) -> bool:
    return bool(doc.meta.get("draft", False))


def render_hugo(doc: DigestDoc, template_dir: str | Path | None = None) -> str:
    """A Hugo page bundle's ``index.md``: YAML front matter with date, categories, tags, draft."""
    pairs: list[tuple[str, Any]] = [
        ("title", _title(doc)),
        ("date", _week_of(doc)),
        ("draft", _draft(doc)),
        ("categories", _categories(doc)),
        ("tags", _list(doc.meta.get("tags"))),
    ]
    if doc.meta.get("slug"):
        pairs.append(("slug", str(doc.meta["slug"])))
    if doc.meta.get("authors"):
        pairs.append(("authors", _list(doc.meta.get("authors"))))
    return _front_matter(pairs) + portable_markdown(_body(doc, template_dir))


def render_jekyll(doc: DigestDoc, template_dir: str | Path | None = None) -> str:
    """A Jekyll ``_posts`` file: front matter with layout, date, categories, tags, draft.

    Jekyll runs Liquid over posts, so a body with ``{{`` or ``{%`` (Vue templates in code
    samples do) is wrapped in ``{% raw %}`` to come out as written."""
    draft = _draft(doc)
    pairs: list[tuple[str, Any]] = [
        ("layout", "post"),
        ("title", _title(doc)),
        ("date", _week_of(doc)),
        ("draft", draft),
        ("categories", _categories(doc)),
        ("tags", _list(doc.meta.get("tags"))),
    ]
    if draft:
        pairs.append(("published", False))  # what Jekyll itself reads
    if doc.meta.get("authors"):
        pairs.append(("author", ", ".join(_list(doc.meta.get("authors")))))
    pairs.append(("excerpt_separator", "<!--more-->"))
    body = portable_markdown(_body(doc, template_dir))
    if "{{" in body or "{%" in body:
        body = "{% raw %}\n" + body.rstrip("\n").replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}") \
            + "\n{% endraw %}\n"
    return _front_matter(pairs) + body


def render_markdown(doc: DigestDoc, template_dir: str | Path | None = None) -> str:
    """Plain CommonMark: the title as a heading, no front matter."""

    body = portable_markdown(_body(doc, template_dir)).lstrip("\n")
    # The title is front matter, plain text to every generator; as a heading it would be Markdown,
    # and a "#" at its end would close the heading.
    title = re.sub(r"#+$", lambda m: "\\#" * len(m.group()), escape_markdown(_title(doc)))
    return f"# {title}\n\n{body}"


def render_html(doc: DigestDoc, template_dir: str | Path | None = None) -> str:
    """A standalone HTML page: the Markdown rendered and sanitized with nh3."""

    def keep_relative(_tag: str, url: str) -> str | None:
        # Relative images and links stay as written: the page sits where the Markdown would.
        return None if ".." in url.split("/") else url

    title = _title(doc)
    escaped = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = markdown_html(_body(doc, template_dir), keep_relative)
    return (
        "<!doctype html>\n<html lang=\"zh\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{escaped}</title>\n"
        f"</head>\n<body>\n<article>\n<h1>{escaped}</h1>\n{body}\n</article>\n</body>\n</html>\n"
    )


RENDERERS: dict[str, Callable[..., str]] = {
    "docusaurus": render_docusaurus,
    "hugo": render_hugo,
    "jekyll": render_jekyll,
    "markdown": render_markdown,
    "html": render_html,
}
"""Every publishing target and its renderer, ``(doc, template_dir=None) -> str``."""
FORMAT_NAMES = tuple(RENDERERS)


def renderer(name: str) -> Callable[..., str]:
    if name not in RENDERERS:
        raise UsageError(f"--format must be one of {', '.join(FORMAT_NAMES)}, not {name!r}")
    return RENDERERS[name]


def render(doc: DigestDoc, fmt: str, template_dir: str | Path | None = None) -> str:
    return renderer(fmt)(doc, template_dir)


def _file_slug(doc: DigestDoc) -> str:

    return slugify(str(doc.meta.get("slug") or _title(doc)))


def output_path(fmt: str, out_dir: Path, doc: DigestDoc) -> Path:
    """Where ``tidings digest --format FMT --out DIR`` writes, in each generator's own layout."""
    week = _week_of(doc)
    if fmt == "docusaurus":
        return out_dir / "blog" / week.isoformat() / "index.md"
    if fmt == "hugo":
        return out_dir / "content" / "posts" / week.isoformat() / "index.md"
    if fmt == "jekyll":
        if _draft(doc):
            return out_dir / "_drafts" / f"{_file_slug(doc)}.md"
        return out_dir / "_posts" / f"{week.isoformat()}-{_file_slug(doc)}.md"
    if fmt == "markdown":
        return out_dir / f"{week.isoformat()}.md"
    if fmt == "html":
        return out_dir / f"{week.isoformat()}.html"
    raise UsageError(f"--format must be one of {', '.join(FORMAT_NAMES)}, not {fmt!r}")


def write_output(text: str, fmt: str, out_dir: Path, doc: DigestDoc) -> Path:
    target = output_path(fmt, out_dir, doc)
    write_if_changed(target, text)
    return target

