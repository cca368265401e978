"""Evaluation: main-text extraction on the saved pages of the shared corpus, four extractors.

Ground truth is in ``evals/extraction/truth_en.json`` and ``truth_zh.json``, written by hand from the
pages' visible text before any extractor's output was looked at. Each page has:

- ``must``: key sentences (or code lines) of the article that a good extraction contains;
- ``must_not``: boilerplate lines of the same page (navigation, comments, related posts, footers);
- optionally ``start`` / ``end``: the first and last line of the article. The reference text is then
  every visible line of the page from ``start`` to ``end`` (read with the standard library's HTML
  parser, not with any extractor), and token-level precision/recall/F1 are computed against it
  (``tidings.htmltext.tokens``: words, and CJK character bigrams).

Matching ignores whitespace, case and NFKC differences (line wrapping differs between extractors).
The pages are read from ``../shared/corpus/html`` by path; nothing of them is copied here.

Systems:
- ``before``: tidings with readability disabled (trafilatura plus site adapters, as before);
- ``after``: tidings as it is now (readability chosen per page);
- ``readability``: bare readability-lxml ``Document(html).summary()`` as text;
- ``trafilatura``: bare ``trafilatura.extract`` with its defaults.

    .venv/bin/python evals/extraction.py            # per page and per language; last line is JSON
    .venv/bin/python evals/extraction.py --quiet    # summary and JSON only
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS_HTML = HERE.parents[1] / "shared" / "corpus" / "html"
sys.path.insert(0, str(HERE.parent / "src"))

from tidings.htmltext import tokens  # noqa: E402
from tidings.stages.extract import decode_html, extract, html_to_text  # noqa: E402

SYSTEMS = ("before", "after", "readability", "trafilatura")


# --- the reference text: visible lines of the page, between two hand-picked lines --------------

_BLOCK = {"p", "div", "section", "article", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "pre",
          "blockquote", "table", "tr", "br", "hr", "header", "footer", "nav", "aside", "main", "figure",
          "figcaption", "dd", "dt", "td", "th"}
_HIDDEN = {"script", "style", "noscript", "template", "svg"}


class _Lines(HTMLParser):
    """Visible text, one line per block: a deliberately simple reader, independent of the extractors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def visible_lines(html: str) -> list[str]:
    reader = _Lines()
    reader.feed(html)
    lines = (re.sub(r"\s+", " ", line).strip() for line in "".join(reader.parts).split("\n"))
    return [line for line in lines if line]


def norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


def reference_text(html: str, start: str, end: str) -> str:
    lines = visible_lines(html)
    first = next(i for i, line in enumerate(lines) if norm(start) in norm(line))
    last = next(i for i in range(first, len(lines)) if norm(end) in norm(lines[i]))
    return "\n".join(lines[first:last + 1])


# --- scores --------------------------------------------------------------------------------------


def token_prf(got: str, want: str) -> tuple[float, float, float]:
    g, w = Counter(tokens(got)), Counter(tokens(want))
    common = sum((g & w).values())
    if not common:
        return 0.0, 0.0, 0.0
    precision, recall = common / sum(g.values()), common / sum(w.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


def key_scores(got: str, page: dict) -> tuple[float, float]:
    """Share of key sentences found, and share of boilerplate lines kept out (1.0 when none given)."""
    text = norm(got)
    found = sum(norm(s) in text for s in page["must"]) / len(page["must"])
    leaked = sum(norm(s) in text for s in page["must_not"])
    clean = 1.0 - leaked / len(page["must_not"]) if page["must_not"] else 1.0
    return found, clean


# --- the systems ---------------------------------------------------------------------------------


def _tidings(readability: bool) -> Callable[[bytes, str], str]:
    def run(content: bytes, name: str) -> str:
        try:
            return extract(content, name, use_readability=readability).text
        except Exception:  # noqa: BLE001 - a failed extraction scores zero, it does not stop the eval
            return ""
    return run


def _bare_readability(content: bytes, name: str) -> str:
    from readability import Document

    try:
        return html_to_text(Document(decode_html(content)).summary(html_partial=True))
    except Exception:  # noqa: BLE001
        return ""


def _bare_trafilatura(content: bytes, name: str) -> str:
    import trafilatura

    return trafilatura.extract(decode_html(content), include_comments=False, include_tables=True) or ""


RUNNERS: dict[str, Callable[[bytes, str], str]] = {
    "before": _tidings(False), "after": _tidings(True),
    "readability": _bare_readability, "trafilatura": _bare_trafilatura,
}


def load_truth() -> list[dict]:
    pages: list[dict] = []
    for path in sorted((HERE / "extraction").glob("truth_*.json")):
        pages.extend(json.loads(path.read_text(encoding="utf-8")))
    return pages


def evaluate(pages: list[dict], systems: tuple[str, ...] = SYSTEMS) -> dict:
    """Scores per page and system, and their means per language."""
    rows: list[dict] = []
    seconds: dict[str, float] = dict.fromkeys(systems, 0.0)
    for page in pages:
        content = (CORPUS_HTML / page["file"]).read_bytes()
        want = reference_text(decode_html(content), page["start"], page["end"]) if "start" in page else None
        row: dict = {"file": page["file"], "lang": page["lang"]}
        for system in systems:
            began = time.perf_counter()
            got = RUNNERS[system](content, page["file"])
            seconds[system] += time.perf_counter() - began
            found, clean = key_scores(got, page)
            score = {"key_recall": found, "clean": clean}
            if want is not None:
                score["p"], score["r"], score["f1"] = token_prf(got, want)
            row[system] = score
        rows.append(row)
    summary: dict = {}
    for lang in sorted({r["lang"] for r in rows}):
        mine = [r for r in rows if r["lang"] == lang]
        summary[lang] = {"pages": len(mine), "pages_with_span": sum("f1" in r[systems[0]] for r in mine)}
        for system in systems:
            scores = [r[system] for r in mine]
            summary[lang][system] = {
                metric: round(statistics.mean(s[metric] for s in scores if metric in s), 4)
                for metric in ("f1", "p", "r", "key_recall", "clean")
                if any(metric in s for s in scores)
            }
    return {"pages": rows, "summary": summary, "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quiet", action="store_true", help="no per-page lines")
    args = parser.parse_args()
    result = evaluate(load_truth())
    if not args.quiet:
        print(f"{'page':58} " + " ".join(f"{s:>22}" for s in SYSTEMS))
        print(f"{'':58} " + " ".join(f"{'f1 / keys / clean':>22}" for _ in SYSTEMS))
        for row in result["pages"]:
            cells = []
            for system in SYSTEMS:
                s = row[system]
                f1 = f"{s['f1']:.3f}" if "f1" in s else "  -  "
                cells.append(f"{f1} / {s['key_recall']:.2f} / {s['clean']:.2f}".rjust(22))
            print(f"{row['file'][:58]:58} " + " ".join(cells))
    print()
    for lang, s in result["summary"].items():
        print(f"[{lang}] {s['pages']} pages ({s['pages_with_span']} with a reference span)")
        for system in SYSTEMS:
            print(f"  {system:12} " + "  ".join(f"{k}={v:.3f}" for k, v in s[system].items()))
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in result["seconds"].items()))
    print(json.dumps({"summary": result["summary"], "seconds": result["seconds"]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
