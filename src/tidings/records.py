"""Plain dataclasses that flow between stages. Parsers and stages return these; only the store
and the pipeline turn them into database rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class ItemRecord:
    """One thing a source produced: an article link, a social post, a note or a blog post."""

    url: str | None
    kind: str = "article"  # article | post | note | blog
    title: str | None = None
    author: str | None = None
    author_handle: str | None = None
    published_at: datetime | None = None
    language: str | None = None
    text: str | None = None
    summary: str | None = None
    summary_origin: str | None = None  # human | extractive | llm:<model>
    section: str | None = None
    tags: list[str] = field(default_factory=list)
    category: str | None = None
    note: str | None = None  # the user's own thoughts (个人思考)
    links: list[str] = field(default_factory=list)  # outgoing links found in the body
    guid: str | None = None  # feed entry id
    extra: dict[str, Any] = field(default_factory=dict)
    line: int | None = None  # where in the source file it started, for messages


@dataclass
class Extracted:
    """What extraction found in one page."""

    title: str | None
    text: str
    author: str | None = None
    published_at: datetime | None = None
    language: str | None = None
    site_name: str | None = None


@dataclass
class ParseResult:
    """What an importer's parser returns: the valid items, plus one error per rejected part."""

    items: list[ItemRecord] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)  # ImportFormatError instances
    format: str | None = None
