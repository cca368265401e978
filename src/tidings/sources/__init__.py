"""Sources: everything tidings collects from, each parser a pure function over text or bytes.

``detect`` sniffs a file's format from its content (never its extension alone) and says why;
``walk`` expands directories. Storing what the parsers return is the pipeline's job."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError

FORMATS = ("auto", "links", "digest", "social", "notes", "blog", "feed", "opml", "text")
TEXT_SUFFIXES = {".md", ".markdown", ".mdx", ".txt"}
SKIPPED_NAMES = {"readme.md"}


# Signatures of files that are certainly not text, whatever their bytes happen to decode to.
_MAGIC = (
    b"\x7fELF", b"MZ", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe",  # executables
    b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"BZh", b"\xfd7zXZ",
    b"7z\xbc\xaf", b"Rar!", b"SQLite format 3\x00", b"\x00asm",
)
# C0 controls no text file carries (TAB, LF, VT, FF, CR and ESC do occur in real text).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_BAD = re.compile("[\x00\udc80-\udcff]")  # NUL, or an undecodable byte (surrogateescape)
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # an undecodable byte (surrogateescape)
_BINARY_SHARE = 0.10
_SAMPLE = 65536


@dataclass
class Decoded:
    """A file's bytes as text, with what was wrong with them.

    ``problems`` are ``(line, reason)`` pairs (1-based line numbers as an editor counts them);
    ``binary`` says why the file is not text at all (then ``text`` is empty)."""

    text: str
    encoding: str
    problems: list[tuple[int, str]] = field(default_factory=list)
    binary: str | None = None


def _truncated_tail(data: bytes) -> int:
    """How many bytes at the end start a UTF-8 character that the file never finishes (a file
    cut short, or a download stopped mid-character); 0 when the last character is whole."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if 0x80 <= byte < 0xC0:
            continue  # a continuation byte: keep looking for its lead byte
        need = 2 if 0xC2 <= byte < 0xE0 else 3 if 0xE0 <= byte < 0xF0 else 4 if 0xF0 <= byte < 0xF5 else 0
        return back if need > back else 0
    return 0


def _not_text(data: bytes, text: str, *, markup: bool) -> str | None:
    """Why these bytes are not a text file we can read, or None. Judged on a sample: a 2 GB
    executable is known by its start. One NUL or a few stray bytes in a long file are damage, not
    binary. Markup (a feed, OPML) declares its own encoding, which its reader honours, so bytes
    that are not UTF-8 count against it only as control characters."""
    if data.startswith(_MAGIC):
        return "a binary file (executable, image, archive or database), not text"
    sample = text[:_SAMPLE]
    if not sample:
        return None
    controls = len(_CONTROL.findall(sample))
    if controls / len(sample) > _BINARY_SHARE:
        return f"a binary file ({controls} control bytes in its first {len(sample)} characters), not text"
    undecodable = len(_UNDECODABLE.findall(sample))
    if not markup and undecodable / len(sample) > _BINARY_SHARE:
        return (f"neither UTF-8 nor GB18030 text ({undecodable} undecodable bytes in its first "
                f"{len(sample)} characters); save it as UTF-8")
    return None


def _not_utf8(text: str) -> bool:
    """Whether a surrogateescape-decoded text is not UTF-8 at all rather than UTF-8 with damage.

    Counted in lines, not bytes: damage (a NUL, a few stray bytes, a bad paste) sits on a line or
    two, while in a GBK file nearly every line with non-ASCII text has undecodable bytes. One bad
    line is damage, whatever the rest of the file looks like."""
    bad = good = 0
    for line in text.split("\n"):
        if _UNDECODABLE.search(line):
            bad += 1
        elif not line.isascii():
            good += 1
    return bad >= 2 and bad > 2 * good


def decode_bytes(data: bytes, *, reject_lines: bool = True) -> Decoded:
    """Bytes of an imported file as text: the one decoding rule of every importer.

    * Valid UTF-8 (a BOM is dropped) is UTF-8.
    * UTF-8 with damage stays UTF-8: a file cut inside its last character loses that partial
      character; elsewhere, a line with undecodable bytes or a NUL is rejected (blanked, so the
      other lines keep their numbers) when ``reject_lines``, else only the bad bytes are dropped
      (XML, where a blanked line could take a closing tag with it). Each is a problem with its
      line number; nothing is ever turned into U+FFFD or re-read in another encoding.
    * Only a file that is not UTF-8 at all (see :func:`_not_utf8`) is tried as GB18030, and
      only if that decodes cleanly: UTF-8 Chinese text often *does* decode as GB18030, into
      mojibake ("宝玉" → "瀹濈帀"), so a clean decode alone proves nothing.
    * Binary files (executables, images, random bytes) come back with ``binary`` set."""
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        try:
            return Decoded(data.decode("utf-16"), "utf-16")
        except UnicodeDecodeError:
            return Decoded("", "utf-16", binary="a UTF-16 byte-order mark, but not UTF-16 text")
    body = data.removeprefix(codecs.BOM_UTF8)
    markup = body.lstrip(b" \t\r\n").startswith(b"<")
    tail = _truncated_tail(body)
    text = body[: len(body) - tail].decode("utf-8", errors="surrogateescape")
    if _not_utf8(text):
        gb = _gb18030(body)
        if gb is not None:
            return gb
    why = _not_text(body, text, markup=markup)
    if why:
        return Decoded("", "utf-8", binary=why)
    return _repaired(text, tail, "utf-8", reject_lines)  # the text decoded above: no second pass


def decode_as(data: bytes, encoding: str, *, reject_lines: bool = True) -> Decoded:
    """``data`` in an encoding already chosen (a feed's declaration, say), damage repaired and
    reported as :func:`decode_bytes` does: never a U+FFFD, never a silent drop."""
    tail = _truncated_tail(data) if encoding == "utf-8" else 0
    text = data[: len(data) - tail].decode(encoding, errors="surrogateescape")
    return _repaired(text, tail, encoding, reject_lines)


def _repaired(text: str, tail: int, encoding: str, reject_lines: bool) -> Decoded:
    """A surrogateescape-decoded ``text`` (``tail`` bytes of a cut last character left off) with
    its bad lines repaired and every repair reported by line."""
    problems: list[tuple[int, str]] = []
    if _BAD.search(text):
        text = _repair_lines(text, problems, reject_lines, encoding)
    if tail:
        problems.append((text.count("\n") + 1, "the file ends inside a UTF-8 character (cut short?); "
                         "the partial character was dropped"))
    return Decoded(text, encoding, problems)


def _gb18030(body: bytes) -> Decoded | None:
    """The file as GB18030 if it decodes cleanly, allowing for a last character cut short."""
    for cut in range(4):  # GB18030 characters are 1, 2 or 4 bytes long
        try:
            text = body[: len(body) - cut].decode("gb18030")
        except UnicodeDecodeError:
            continue
        # A real GBK file has no control characters; random bytes that happen to decode do.
        if _CONTROL.search(text) or body.startswith(_MAGIC):
            return None
        problems = [(text.count("\n") + 1, "the file ends inside a GB18030 character (cut short?); "
                     "the partial character was dropped")] if cut else []
        return Decoded(text, "gb18030", problems)
    return None


def _repair_lines(text: str, problems: list[tuple[int, str]], reject_lines: bool, encoding: str) -> str:
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not _BAD.search(line):
            continue
        what = "a NUL byte" if "\x00" in line else f"bytes that are not {encoding.upper()}"
        if reject_lines:
            lines[number - 1] = "\r" if line.endswith("\r") else ""
            problems.append((number, f"{what}: line rejected"))
        else:
            lines[number - 1] = _BAD.sub("", line)
            problems.append((number, f"{what}: dropped"))
    return "\n".join(lines)


# --- YAML with bounded aliases ---------------------------------------------------------------

# Front matter is a few dozen values. An alias bomb ("billion laughs": each level lists the one
# before nine times) is a few hundred bytes whose values, expanded, number 9**9: PyYAML builds it
# cheaply as shared objects, and whoever walks it (JSON, the store) then runs out of memory.
YAML_MAX_VALUES = 10_000
YAML_MAX_CHARS = 1_000_000


class YAMLLimitError(ValueError):
    """YAML whose aliases expand past :data:`YAML_MAX_VALUES` values or :data:`YAML_MAX_CHARS`
    characters, or refer to themselves."""


def load_yaml(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """``yaml.load`` with a SafeLoader (or subclass), refusing alias bombs before building
    anything: the node graph is composed, its size with every alias expanded is counted (each
    shared node once, so counting is cheap), and only then is it turned into Python values.
    Raises YAMLLimitError, or PyYAML's own errors for malformed YAML."""
    reader = loader(text)
    try:
        node = reader.get_single_node()
        if node is None:
            return None
        # Without aliases a document cannot outgrow its own text, so a long one is never refused.
        limits = (max(YAML_MAX_VALUES, len(text)), max(YAML_MAX_CHARS, 2 * len(text)))
        _expanded_size(node, limits, {}, set())
        return reader.construct_document(node)
    finally:
        reader.dispose()


def _expanded_size(
    node: yaml.Node, limits: tuple[int, int], sizes: dict[int, tuple[int, int]], open_: set[int]
) -> tuple[int, int]:
    """(values, characters) of ``node`` with aliases expanded; memoised by node identity."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise YAMLLimitError("YAML front matter: an alias refers to itself")
    if isinstance(node, yaml.ScalarNode):
        size = (1, len(node.value))
    else:
        open_.add(key)
        children: list[yaml.Node] = []
        for child in node.value:
            children.extend(child if isinstance(child, tuple) else (child,))
        values, chars = 1, 0
        for child in children:
            v, c = _expanded_size(child, limits, sizes, open_)
            values, chars = values + v, chars + c
            if values > limits[0] or chars > limits[1]:
                raise YAMLLimitError(
                    f"YAML front matter: its aliases expand to more than {limits[0]:,} values or "
                    f"{limits[1]:,} characters (an alias bomb?); refused"
                )
        open_.discard(key)
        size = (values, chars)
    sizes[key] = size
    return size


def detect(path: Path, content: bytes, section_names: list[str], text: str | None = None) -> tuple[str, str]:
    """The format of one file and the reason it was chosen. ``text``: the content already decoded."""
    from . import blog, digest, feeds, links, notes, opml, social
    from . import text as plain_text

    head = content[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") or b"<?xml" in head[:200]:
        for name, module in (("opml", opml), ("feed", feeds)):
            ok, why = module.looks_like(content)
            if ok:
                return name, why
        return "feed", "XML that is neither OPML nor a known feed type; trying it as a feed"
    if text is None:
        text = decode_bytes(content).text if content else ""
    ok, why = digest.is_digest(text, section_names)
    if ok:
        return "digest", why
    for name, module in (("links", links), ("social", social), ("notes", notes), ("blog", blog)):
        ok, why = module.looks_like(text)
        if ok:
            return name, why
    if path.suffix.lower() in {".md", ".markdown", ".mdx"}:
        return "blog", "a Markdown file that is neither a digest, a post archive nor a notes file"
    ok, why = plain_text.looks_like(text)
    if ok:
        return "text", why
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
            elif fmt == "text" and child.suffix.lower() != ".txt":
                yield child, "not a .txt file (text imports of a folder take .txt files)", path
            elif fmt == "auto" and child.suffix.lower() not in TEXT_SUFFIXES | {".xml", ".rss", ".atom", ".opml"}:
                yield child, "not a text, Markdown, feed or OPML file", path
            else:
                yield child, None, path
