"""Parser for static-site blog posts (Jekyll, Hugo, Hexo, Docusaurus): one post per file.

Front matter is YAML between ``---`` lines, TOML between ``+++`` lines, or absent. What real
posts do with it, and how this parser answers:

* Leading blank lines before the opening delimiter are skipped (Hugo does); a delimiter with
  trailing spaces counts (Jekyll accepts ``--- ``). Anything else on the first line of text
  (``／‘---``) means no front matter.
* Front matter that is never closed is not front matter (Jekyll renders such a file whole);
  ``extra["front_matter_error"]`` says so.
* YAML that PyYAML refuses (a TAB after a key, ...) is retried with such TABs turned into spaces,
  then read line by line (``key: value``, block and flow lists), so the post still imports;
  ``extra["front_matter_error"]`` keeps PyYAML's message. TOML falls back the same way.
* Keys are matched case-insensitively (Hugo lowercases them: ``Categories``, ``Tags``). With
  duplicate keys the last one wins (what PyYAML and Hugo do).
* title: front matter, else the first level-1 heading outside code, else the file name without
  its date prefix and extension (``index.md`` -> its folder's name). Only a level-1 heading
  counts: a post's ``##`` headings are sections such as "目录", never its title.
* published_at: ``date`` / ``publishDate`` / ``pubDate`` / ``published``, else the date in the
  file (or ``index.md`` folder) name, else ``createdate`` / ``lastmod`` and friends (Hugo uses
  ``lastmod`` when nothing else is there). Kept timezone-aware when the source gives an offset,
  naive otherwise.
* categories (``categories`` or ``category``; strings, lists, ``false``) -> all of them in
  ``extra["categories"]``, the first in ``item.category``; tags -> ``item.tags``. A string is
  split on whitespace and commas, as Jekyll does for ``tags: a b``. Categories are not merged
  into tags, so the two stay distinguishable.
* The part before ``<!--truncate-->`` / ``<!-- truncate -->`` / ``{/* truncate */}`` (and
  Hexo/Hugo's ``<!--more-->``) is the author's excerpt -> ``extra["excerpt"]`` (absent when empty).
* Every other front-matter key goes to ``extra["front_matter"]``, made JSON-serialisable
  (dates and times as ISO strings).
* url: an absolute ``url`` / ``permalink`` / ``canonical_url`` / ``slug`` from the front matter,
  else ``blog:<site dir>/<path inside it>``. Pass ``root`` (the directory holding one folder per
  site, e.g. the corpus's ``blog/``) for an exact relative path; without it the site folder is
  guessed from layout folders (``_posts``, ``content``, ``source``, ``blog``, ``i18n``).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import PurePath
from typing import Any

import yaml

from ..errors import ImportFormatError
from ..records import ItemRecord, ParseResult
from ..textutil import calendar_day
from . import YAMLLimitError, load_yaml
from .social import (
    atx_heading,
    dedupe,
    detect_language,
    fence_mask,
    find_links,
    normalize_newlines,
    plain_inline,
)

FORMAT = "blog"
EXTENSIONS = (".md", ".markdown", ".mdx")

_TITLE_KEYS = ("title",)
_DATE_KEYS = ("date", "publishdate", "pubdate", "published", "publish_date")
_LATE_DATE_KEYS = (
    "createdate",
    "createtime",
    "created",
    "lastmod",
    "modified",
    "last_modified_at",
    "updated",
)
_CATEGORY_KEYS = ("categories", "category")
_TAG_KEYS = ("tags", "tag")
_URL_KEYS = ("url", "permalink", "canonical_url", "canonicalurl", "slug")
_AUTHOR_KEYS = ("author", "authors")
# Keys whose meaning is taken into the record's own fields; everything else stays in front_matter.
_CONSUMED = set(_TITLE_KEYS) | {"date"} | set(_CATEGORY_KEYS) | set(_TAG_KEYS)
_LAYOUT_DIRS = ("_posts", "content", "source", "blog", "i18n", "posts", "post", "_drafts")

_EXCERPT_RE = re.compile(r"<!--\s*(?:truncate|more)\s*-->|\{/\*\s*truncate\s*\*/\}", re.I)
_HEADING_ATTR_RE = re.compile(r"\s*\{[#:.][^}]*\}\s*$")  # Hugo/kramdown "{#id}" / "{: .class}"
_DATE_STR_RE = re.compile(
    r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
    r"(?:(?:[Tt]|\s+)(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6})\d*)?)?)?"
    r"\s*(Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
_NAME_DATE_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)|^(\d{4})(\d{2})(\d{2})(?!\d)")
_NAME_DATE_PREFIX_RE = re.compile(r"^(?:\d{4}-\d{1,2}-\d{1,2}(?!\d)|\d{8}(?!\d))[-_#\s]*")
_SPLIT_RE = re.compile(r"[\s,，、]+")


# ---------------------------------------------------------------------------- front matter


def _split_front_matter(lines: Sequence[str]) -> tuple[str | None, list[str], int, str | None]:
    """(kind, front-matter lines, index of the first body line, problem) for a post's lines."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None, [], len(lines), None
    delimiter = lines[first].rstrip()
    if delimiter not in ("---", "+++"):
        return None, [], 0, None
    for j in range(first + 1, len(lines)):
        if lines[j].rstrip() == delimiter:
            return ("yaml" if delimiter == "---" else "toml"), list(lines[first + 1 : j]), j + 1, None
    return None, [], 0, f"front matter opened on line {first + 1} is never closed"


def _lenient_scalar(value: str) -> Any:
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1].strip()
        return [_lenient_scalar(v) for v in _split_flow(inner)] if inner else []
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("", "null", "~", "none"):
        return None
    return value


def _split_flow(inner: str) -> list[str]:
    """Split a flow list's inside on commas that are not within quotes."""
    parts: list[str] = []
    buf: list[str] = []
    quote: str | None = None
    for ch in inner:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            buf.append(ch)
        elif ch == ",":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


_LENIENT_KEY_RE = re.compile(r"^([A-Za-z0-9_][\w\-.]*(?:[ \t]+[\w\-.]+)*)[ \t]*[:=][ \t]*(.*)$")
_LENIENT_ITEM_RE = re.compile(r"^\s+-\s*(.*)$|^-\s+(.*)$")


def _lenient_parse(lines: Sequence[str]) -> dict[str, Any]:
    """``key: value`` (or TOML ``key = value``) lines, with ``- item`` lines under a key making a
    list. Anything else is ignored: a malformed header should cost its odd lines, not the post."""
    data: dict[str, Any] = {}
    key: str | None = None
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = _LENIENT_ITEM_RE.match(line)
        if item and key is not None:
            value = data.get(key)
            if not isinstance(value, list):
                value = []
            value.append(_lenient_scalar(item.group(1) or item.group(2) or ""))
            data[key] = value
            continue
        m = _LENIENT_KEY_RE.match(line)
        if m and not line[0].isspace():
            key = m.group(1).strip()
            data[key] = _lenient_scalar(m.group(2))
    return data


_TAB_AFTER_KEY_RE = re.compile(r"^([ \t]*[^\s:#][^:\n]*:)\t+", re.M)


class _NoTimestampLoader(yaml.SafeLoader):
    """SafeLoader that leaves timestamps as strings: one impossible date (``2021-99-99``) makes
    PyYAML's constructor raise for the whole document, and should cost only that value."""


_NoTimestampLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse_yaml(source: str) -> tuple[dict[str, Any], str | None]:
    problem: str | None = None
    tab_fixed = _TAB_AFTER_KEY_RE.sub(r"\1 ", source)
    attempts: list[tuple[str, type[yaml.SafeLoader], str | None]] = [
        (source, yaml.SafeLoader, None),
        (source, _NoTimestampLoader, "read with dates as text"),
    ]
    if tab_fixed != source:
        attempts += [
            (tab_fixed, yaml.SafeLoader, "read after turning TABs after keys into spaces"),
            (tab_fixed, _NoTimestampLoader, "read after turning TABs after keys into spaces, dates as text"),
        ]
    for text, loader, recovery in attempts:
        try:
            data = load_yaml(text, loader)  # both loaders are SafeLoader subclasses
        except YAMLLimitError:
            raise  # an alias bomb stays one on every retry, and the line reader must not see it either
        except RecursionError:
            # Absurd nesting: every retry would recurse just as deep, so go to the line reader.
            problem = problem or "YAML: nested too deeply"
            break
        except Exception as exc:  # YAMLError, but also ValueError from impossible timestamps etc.
            if problem is None:
                problem = f"YAML: {' '.join(str(exc).split())}"
            continue
        if data is None:
            return {}, problem and f"{problem}; {recovery}"
        if not isinstance(data, dict):
            return _lenient_parse(
                source.split("\n")
            ), f"YAML front matter is a {type(data).__name__}, not a mapping"
        return data, problem and f"{problem}; {recovery}"
    return _lenient_parse(source.split("\n")), f"{problem}; read line by line instead"


def _parse_toml(source: str) -> tuple[dict[str, Any], str | None]:
    try:
        return tomllib.loads(source), None
    except Exception as exc:  # TOMLDecodeError, or RecursionError on absurd nesting
        return _lenient_parse(source.split("\n")), f"TOML: {exc}"


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Front-matter values as JSON-ready data: dates become ISO strings, unknown types strings."""
    if depth > 20:
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v, depth + 1) for v in value]
    return str(value)


# ---------------------------------------------------------------------------- fields


def _parse_date_value(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        return parse_date_string(value)
    return None


def parse_date_string(value: str) -> datetime | None:
    """``2014-10-1 12:00:00``, ``2025-09-16 19:36:16 +0800``, ``2018-05-11T10:33:25Z``,
    ``2018/10/05 22:07:51`` ... -> datetime (aware when an offset is given); None if not a date."""
    value = value.strip()
    if len(value) > 64:  # no date is that long; the limit also keeps the regex cheap
        return None
    m = _DATE_STR_RE.match(value)
    if not m:
        return None
    year, month, day, hour, minute, second, frac, tz = m.groups()
    tzinfo: timezone | None = None
    if tz:
        if tz.upper() in ("Z", "UTC", "GMT"):
            tzinfo = UTC
        else:
            sign = -1 if tz[0] == "-" else 1
            digits = tz[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
            if hours > 23 or minutes > 59:
                return None
            tzinfo = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((frac or "0").ljust(6, "0")),
            tzinfo=tzinfo,
        )
    except ValueError:
        return None


def _as_list(value: Any) -> list[str]:
    """A categories/tags value as a list of strings (``false``/null -> empty)."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, str):
        return [part for part in _SPLIT_RE.split(value.strip()) if part]
    if isinstance(value, int | float):
        return [str(value)]
    if isinstance(value, dict):
        return [str(k).strip() for k in value if str(k).strip()]
    if isinstance(value, list | tuple):
        out: list[str] = []
        for entry in value:
            if isinstance(entry, list | tuple):
                out.extend(_as_list(entry))
            elif entry is None or isinstance(entry, bool | dict):
                continue
            else:
                text = str(entry).strip()
                if text:
                    out.append(text)
        return out
    return []


def _author(value: Any) -> str | None:
    if isinstance(value, str):
        # Stray quote characters survive in plain YAML scalars (author: \xa0 "赵化冰").
        return value.strip().strip("\"'“”").strip() or None
    if isinstance(value, dict):
        name = value.get("name")
        return str(name).strip() if name else None
    if isinstance(value, list | tuple):
        names = [a for a in (_author(v) for v in value) if a]
        return ", ".join(dedupe(names)) or None
    return None


def _name_stem(file: str) -> str:
    """The part of the path that names the post: ``blog/2022-04-12-dagger/index.md`` gives
    ``2022-04-12-dagger``, ``_posts/2015-06-14-closure.md`` gives ``2015-06-14-closure``."""
    path = PurePath(file.replace("\\", "/"))
    stem = path.name
    for ext in EXTENSIONS:
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    if stem.lower() in ("index", "_index", "readme") and path.parent.name:
        stem = path.parent.name
    return stem.strip()


def title_from_file_name(file: str) -> str:
    stem = _name_stem(file)
    title = _NAME_DATE_PREFIX_RE.sub("", stem).strip()
    return title or stem


def date_from_file_name(file: str) -> datetime | None:
    stem = _name_stem(file)
    m = _NAME_DATE_RE.match(stem)
    if not m:
        return None
    year, month, day = (
        (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(4), m.group(5), m.group(6))
    )
    return calendar_day(year, month, day)


def _first_h1(body_lines: Sequence[str]) -> str | None:
    mask = fence_mask(body_lines)
    for i, line in enumerate(body_lines):
        if mask[i]:
            continue
        heading = atx_heading(line)
        if heading and heading[0] == 1:
            title = plain_inline(_HEADING_ATTR_RE.sub("", heading[1]))
            if title:
                return title
    return None


def blog_path(file: str, root: str | None = None) -> str:
    """``<site dir>/<path inside it>`` for the ``blog:`` url (see the module docstring)."""
    norm = file.replace("\\", "/")
    if root is not None:
        try:
            rel = os.path.relpath(norm, root.replace("\\", "/")).replace("\\", "/")
        except ValueError:  # another drive on Windows
            rel = ""
        if rel and not rel.startswith("../") and rel != "..":
            return rel
    parts = [p for p in PurePath(norm).parts if p not in ("/", "")]
    if len(parts) < 2:
        return "/".join(parts)
    # The rightmost layout folder, then further left over layout folders (source/_posts,
    # content/posts): the folder before them is the site's.
    idx = None
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] in _LAYOUT_DIRS:
            idx = i
            break
    if idx is None:
        return "/".join(parts[-2:])
    while idx > 1 and parts[idx - 1] in _LAYOUT_DIRS:
        idx -= 1
    return "/".join(parts[idx - 1 :])


def _lookup(fm_lower: dict[str, Any], keys: Iterable[str]) -> tuple[str, Any] | None:
    for key in keys:
        if key in fm_lower:
            return key, fm_lower[key]
    return None


# ---------------------------------------------------------------------------- parser


def parse_blog_post(text: str, *, file: str, root: str | None = None) -> ParseResult:
    """Parse one blog post file into a single ``kind="blog"`` item.

    ``file`` is the post's path (used for the title/date fallbacks and the ``blog:`` url);
    ``root``, when given, is the directory the ``blog:`` path is made relative to. Only an empty
    file is rejected; malformed front matter degrades, it does not stop the import."""
    result = ParseResult(format=FORMAT)
    try:
        item = _parse(text, file, root)
    except ImportFormatError as exc:
        result.errors.append(exc)
    except Exception as exc:  # the contract: callers only ever see ImportFormatError
        result.errors.append(ImportFormatError(file, None, f"internal parser error: {exc!r}"))
    else:
        result.items.append(item)
    return result


def _parse(text: str, file: str, root: str | None) -> ItemRecord:
    lines = normalize_newlines(text).split("\n")
    if not any(line.strip() for line in lines):
        raise ImportFormatError(file, None, "empty blog post")
    kind, fm_lines, body_start, problem = _split_front_matter(lines)
    front: dict[str, Any] = {}
    if kind == "yaml":
        try:
            front, problem = _parse_yaml("\n".join(fm_lines))
        except YAMLLimitError as exc:
            raise ImportFormatError(file, None, str(exc)) from None
    elif kind == "toml":
        front, problem = _parse_toml("\n".join(fm_lines))

    # Case-insensitive view; for "Tags" and "tags" both present, the lowercase spelling wins.
    lower: dict[str, Any] = {}
    for key, value in front.items():
        k = str(key).strip().lower()
        if k not in lower or str(key) == k:
            lower[k] = value

    body_lines = list(lines[body_start:])
    while body_lines and not body_lines[0].strip():
        body_lines.pop(0)
    body = "\n".join(body_lines).rstrip()

    title_value = lower.get("title")
    title = " ".join(str(title_value).split()) if title_value not in (None, "", False) else ""
    title = title or _first_h1(body_lines) or title_from_file_name(file)

    published = None
    hit = _lookup(lower, _DATE_KEYS)
    for key in _DATE_KEYS:
        if key in lower and (published := _parse_date_value(lower[key])) is not None:
            break
    if published is None:
        published = date_from_file_name(file)
    if published is None:
        for key in _LATE_DATE_KEYS:
            if key in lower and (published := _parse_date_value(lower[key])) is not None:
                break

    categories: list[str] = []
    for key in _CATEGORY_KEYS:
        if key in lower:
            categories.extend(_as_list(lower[key]))
    categories = dedupe(categories)
    tags: list[str] = []
    for key in _TAG_KEYS:
        if key in lower:
            tags.extend(_as_list(lower[key]))
    tags = dedupe(tags)

    url = None
    for key in _URL_KEYS:
        value = lower.get(key)
        if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
            url = value.strip()
            break
    rel = blog_path(file, root)
    url = url or f"blog:{rel}"

    author = None
    for key in _AUTHOR_KEYS:
        if key in lower and (author := _author(lower[key])):
            break

    extra: dict[str, Any] = {
        "path": rel,
        "front_matter_format": kind,
        "categories": categories,
        "front_matter": {
            str(k): _jsonable(v) for k, v in front.items() if str(k).strip().lower() not in _CONSUMED
        },
    }
    if hit is not None and hit[0] == "date" and not isinstance(hit[1], datetime | date):
        extra["date_raw"] = _jsonable(hit[1])  # e.g. "2025-09-16 19:36:16 +0800", as the author wrote it
    if problem:
        extra["front_matter_error"] = problem
    excerpt = _excerpt(body)
    if excerpt:
        extra["excerpt"] = excerpt
    # json round-trip guard: the store writes extra as JSON, so fail here (as a parse error)
    # rather than there if something unserialisable slipped through.
    json.dumps(extra, ensure_ascii=False)

    return ItemRecord(
        url=url,
        kind="blog",
        title=title,
        author=author,
        published_at=published,
        language=detect_language(f"{title}\n{body}"),
        text=body,
        tags=tags,
        category=categories[0] if categories else None,
        links=find_links(body),
        extra=extra,
        line=1,
    )


def _excerpt(body: str) -> str | None:
    """The text before the first truncate/more marker outside code, or None."""
    lines = body.split("\n")
    mask = fence_mask(lines)
    offset = 0
    for i, line in enumerate(lines):
        if not mask[i]:
            m = _EXCERPT_RE.search(line)
            if m:
                excerpt = body[: offset + m.start()].strip()
                return excerpt or None
        offset += len(line) + 1
    return None


def looks_like(text: str) -> tuple[bool, str]:
    """Is this one blog post? Yes when it opens with closed YAML (``---``) or TOML (``+++``)
    front matter holding at least one key. Posts without front matter are not detectable from
    their text; the caller can go by the ``.md``/``.markdown``/``.mdx`` file layout instead."""
    lines = normalize_newlines(text).split("\n")
    kind, fm_lines, _, problem = _split_front_matter(lines)
    if kind is None:
        return False, problem or "no front matter"
    keys = [m.group(1) for line in fm_lines if (m := _LENIENT_KEY_RE.match(line)) and not line[0].isspace()]
    if not keys:
        return False, f"{kind.upper()} front matter without keys"
    return True, f"{kind.upper()} front matter with keys {', '.join(keys[:5])}"
