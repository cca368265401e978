"""Sources: everything tidings collects from, each parser a pure function over text or bytes.

``detect`` sniffs a file's format from its content (never its extension alone) and says why;
``walk`` expands directories. Storing what the parsers return is the pipeline's job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError

FORMATS = ("auto", "links", "digest", "social", "notes", "blog", "feed", "opml")
TEXT_SUFFIXES = {".md", ".markdown", ".mdx", ".txt"}
SKIPPED_NAMES = {"readme.md"}


def read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


def detect(path: Path, content: bytes, section_names: list[str]) -> tuple[str, str]:
    """The format of one file and the reason it was chosen."""
    from . import blog, digest, feeds, notes, opml, social

    head = content[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") or b"<?xml" in head[:200]:
        for name, module in (("opml", opml), ("feed", feeds)):
            ok, why = module.looks_like(content)
            if ok:
                return name, why
        return "feed", "XML that is neither OPML nor a known feed type; trying it as a feed"
    text = read_text(path) if content else ""
    ok, why = digest.is_digest(text, section_names)
    if ok:
        return "digest", why
    for name, module in (("social", social), ("notes", notes), ("blog", blog)):
        ok, why = module.looks_like(text)
        if ok:
            return name, why
    if path.suffix.lower() in {".md", ".markdown", ".mdx"}:
        return "blog", "a Markdown file that is neither a digest, a post archive nor a notes file"
    return "links", "plain text: one link per line"


def walk(paths: list[str], fmt: str) -> Iterator[tuple[Path, str | None, Path]]:
    """Files to import; a directory recurses. Yields ``(path, skip_reason, root)``: root is the
    argument the file was found under, which blog imports need for stable ids."""
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise UsageError(f"no such file or directory: {raw}")
        if path.is_file():
            yield path, None, path.parent
            continue
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            if any(part.startswith(".") for part in child.relative_to(path).parts):
                continue
            if child.name.lower() in SKIPPED_NAMES or child.suffix.lower() == ".tsv":
                yield child, "README and .tsv files are documentation, not content", path
            elif fmt in ("digest", "social", "notes", "blog") and child.suffix.lower() not in TEXT_SUFFIXES:
                yield child, f"not a Markdown file ({fmt} imports take .md, .markdown, .mdx)", path
            elif fmt == "auto" and child.suffix.lower() not in TEXT_SUFFIXES | {".xml", ".rss", ".atom", ".opml"}:
                yield child, "not a text, Markdown, feed or OPML file", path
            else:
                yield child, None, path
