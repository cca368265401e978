"""Search and ask over the store: SQLite FTS5 on pre-segmented text, BM25 with field weights,
optional hybrid ranking with cached embeddings, and extractive answers with verified citations.

Engine (see docs/ARCHITECTURE.md): FTS5 lives in the store file itself, so the index is backed
up, copied and locked with the data, and needs no extra service. FTS5 cannot segment Chinese, so
tidings does: every indexed field is cut into words by jieba (English lower-cased, compound tech
terms such as ``node.js`` kept whole) and stored as words joined by spaces; FTS5's ``unicode61``
tokenizer then only splits on those spaces, and ``porter`` stems English words the same way on
both sides. Queries are segmented by the same function, so a query word and an indexed word
always compare equal.

Consistency: SQLite triggers (migration 0002) queue the id of every item whose indexed fields
change, in the writer's own transaction, whoever the writer is (the ORM, raw SQL, a second
process, the web server). Segmentation needs Python, so the queue is drained lazily:
:func:`refresh_index` runs at the start of every search and ask and after pipeline stages. We chose
triggers over comparing ``items.updated_at`` with an indexed-at marker because ``updated_at`` is
only bumped by ORM updates of the items row itself: a tag added in ``item_tags``, a digest entry
pointing at the item, or a raw ``UPDATE`` would all be missed. Session events would miss the same
raw writes and writes from other processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sqlite3
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from ..config import Config
from ..errors import TidingsError, UsageError
from ..store import Store
from ..textutil import CJK_CHAR_RE, STOPWORDS, add_user_words, has_cjk, is_chinese

log = logging.getLogger(__name__)

FIELDS = ("title", "summary", "text", "note", "tags", "author", "section", "kind")
SEGMENTER_VERSION = "1"
"""Bumped whenever :func:`segment` changes: a store indexed with another version is re-indexed."""
MAX_INDEXED_CHARS = 200_000
"""Longer texts are indexed up to here: enough for any article, bounded for pathological pages."""
REFUSAL_THRESHOLD = 0.42
"""Evidence coverage below which ``ask`` refuses. Calibrated with ``tidings eval ask`` on the
calibration half of evals/queries.jsonl (the midpoint of the best-separating interval)."""

_OPEN, _CLOSE = "\x02", "\x03"  # highlight() markers: control characters never occur in segmented text
MARK_OPEN, MARK_CLOSE = "**", "**"
"""How snippets mark matched words: Markdown bold, readable raw and rendered alike."""


class SearchError(TidingsError):
    exit_code = 2


# ------------------------------------------------------------------------------------------
# Segmentation
# ------------------------------------------------------------------------------------------

# Outside CJK text any Unicode word counts (Cyrillic, Greek …), with the connectors that keep tech
# terms whole (C++, C#, Node.js, gpt-4o).
_WORD_RE = re.compile(r"[^\W_]+(?:[.+#'\-][^\W_]+)*[+#]*")


def _normalize(text: str) -> tuple[str, list[int] | None]:
    """NFKC + lower case, and the map from each normalized character back to the original.

    ``None`` means the identity map. When normalizing keeps the length (full-width punctuation
    and letters map one to one, as in nearly all Chinese text) the map is taken as the identity
    without a per-character loop; only a text with ligatures or similar expansions pays for it."""
    lowered = unicodedata.normalize("NFKC", text).lower()
    if len(lowered) == len(text):
        return lowered, None
    parts: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        norm = ch.lower() if ch.isascii() else unicodedata.normalize("NFKC", ch).lower()
        parts.append(norm)
        origin.extend([i] * len(norm))
    return "".join(parts), origin


_CJK_RUN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")
_mixed_words: re.Pattern[str] | None = None
"""User-dictionary words that mix scripts ("大模型Agent"): found first and kept whole."""


def _segment_latin(norm: str, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    for m in _WORD_RE.finditer(norm, start, end):
        yield m.group(), m.start(), m.end()


def _segment_plain(norm: str, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """jieba sees only the runs of CJK characters: on Latin text it walks its dictionary graph
    character by character, several times slower than a regex, and splits ``node.js``."""
    from ..textutil import _get_tokenizer  # the project's one jieba instance, with the user words

    tok = _get_tokenizer()
    pos = start
    for m in _CJK_RUN_RE.finditer(norm, start, end):
        yield from _segment_latin(norm, pos, m.start())
        run = m.group()
        if len(run) == 1:
            yield run, m.start(), m.end()
        else:
            for word, s, e in tok.tokenize(run):
                yield word, m.start() + s, m.start() + e
        pos = m.end()
    yield from _segment_latin(norm, pos, end)


def _segment_normalized(norm: str) -> Iterator[tuple[str, int, int]]:
    """Words of already-normalized text with their offsets in it."""
    if not has_cjk(norm):
        yield from _segment_latin(norm, 0, len(norm))
        return
    pos = 0
    if _mixed_words is not None:
        for m in _mixed_words.finditer(norm):
            yield from _segment_plain(norm, pos, m.start())
            yield m.group(), m.start(), m.end()
            pos = m.end()
    yield from _segment_plain(norm, pos, len(norm))


def segment(text: str) -> list[tuple[str, int, int]]:
    """Words of mixed Chinese/English text, lower-cased and NFKC-normalized, each with its
    ``(start, end)`` offsets in the *original* text. Punctuation and spaces are dropped."""
    if not text:
        return []
    norm, origin = _normalize(text)
    words = list(_segment_normalized(norm))
    if origin is None:
        return words
    return [(w, origin[s], origin[e - 1] + 1) for w, s, e in words]


def segmented(text: str | None) -> str:
    """The form stored in the index: words joined by single spaces."""
    if not text:
        return ""
    norm, _ = _normalize(text[:MAX_INDEXED_CHARS])
    return " ".join(w for w, _s, _e in _segment_normalized(norm))


def segmenter_signature(config: Config | None) -> str:
    """Identifies how text is segmented: a change of version or user dictionary re-indexes."""
    words = sorted(set(config.user_dictionary)) if config else []
    return hashlib.sha1(json.dumps([SEGMENTER_VERSION, words], ensure_ascii=False).encode()).hexdigest()[:16]


def prepare(config: Config | None) -> None:
    """Teach jieba the configured user dictionary before anything is segmented."""
    global _mixed_words
    if config is None:
        return
    add_user_words(config.user_dictionary)
    mixed = sorted(
        {w.strip().lower() for w in config.user_dictionary if has_cjk(w) and re.search(r"[^\W_]", CJK_CHAR_RE.sub("", w))},
        key=len, reverse=True,
    )
    _mixed_words = re.compile("|".join(re.escape(w) for w in mixed)) if mixed else None


# ------------------------------------------------------------------------------------------
# Index maintenance
# ------------------------------------------------------------------------------------------

# The live definitions of the queue triggers. Migration 0002 holds a frozen copy; a later
# migration that rebuilds ``items`` in batch mode drops its triggers, so ensure_schema puts them
# back (and re-queues everything) whenever one is missing. A test keeps both copies identical.
_ITEM_COLUMNS = (
    "title, summary, text, note, author, author_handle, section, kind, published_at, duplicate_of_id, url"
)
TRIGGERS: dict[str, str] = {
    "search_items_ai": "CREATE TRIGGER search_items_ai AFTER INSERT ON items BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (new.id); END",
    "search_items_au": f"CREATE TRIGGER search_items_au AFTER UPDATE OF {_ITEM_COLUMNS} ON items BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (new.id); END",
    "search_items_ad": "CREATE TRIGGER search_items_ad AFTER DELETE ON items BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (old.id); END",
    "search_tags_ai": "CREATE TRIGGER search_tags_ai AFTER INSERT ON item_tags BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (new.item_id); END",
    "search_tags_au": "CREATE TRIGGER search_tags_au AFTER UPDATE ON item_tags BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (old.item_id); "
    "INSERT INTO search_dirty (item_id) VALUES (new.item_id); END",
    "search_tags_ad": "CREATE TRIGGER search_tags_ad AFTER DELETE ON item_tags BEGIN "
    "INSERT INTO search_dirty (item_id) VALUES (old.item_id); END",
    "search_entries_ai": "CREATE TRIGGER search_entries_ai AFTER INSERT ON digest_entries "
    "WHEN new.item_id IS NOT NULL BEGIN INSERT INTO search_dirty (item_id) VALUES (new.item_id); END",
    "search_entries_au": "CREATE TRIGGER search_entries_au AFTER UPDATE OF item_id ON digest_entries BEGIN "
    "INSERT INTO search_dirty (item_id) SELECT old.item_id WHERE old.item_id IS NOT NULL; "
    "INSERT INTO search_dirty (item_id) SELECT new.item_id WHERE new.item_id IS NOT NULL; END",
}
_BATCH = 100


@contextmanager
def _connect(store: Store) -> Iterator[sqlite3.Connection]:
    """The store's own DB-API connection (from its pool): FTS5 SQL is raw SQL anyway."""
    if store.engine.dialect.name != "sqlite":
        raise SearchError("search needs a SQLite store (FTS5); this store is " + store.engine.dialect.name)
    raw = store.engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert isinstance(conn, sqlite3.Connection)
        yield conn
    finally:
        raw.close()


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken up front (BEGIN IMMEDIATE) so that what we read in it is what
    we write back: no other writer can slip in between. busy_timeout makes us wait our turn."""
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        if own:
            conn.commit()
    except BaseException:
        if own:
            conn.rollback()
        raise


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM search_meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def ensure_schema(conn: sqlite3.Connection, signature: str) -> None:
    """Check the search tables and triggers exist and the index was built by this segmenter."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'search_%'")}
    if "search_fts" not in names:
        raise SearchError("the store has no search index (migration 0002 did not run)")
    missing = [name for name in TRIGGERS if name not in names]
    stale = _meta(conn, "segmenter") != signature
    if not missing and not stale:
        return
    with _write(conn):
        for name in missing:
            log.warning("search: trigger %s was missing (a table was rebuilt?); re-creating it", name)
            conn.execute(TRIGGERS[name])
        if stale:
            log.info("search: segmenter changed; the index will be rebuilt")
        conn.execute("INSERT INTO search_dirty (item_id) SELECT id FROM items")
        conn.execute(
            "INSERT INTO search_meta (key, value) VALUES ('segmenter', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (signature,),
        )


def _item_date(published: str | None, first_week: str | None, seen: str | None) -> str | None:
    """The date --since/--until compare: published, else the week of the first digest listing the
    item (what a curator remembers), else when tidings first saw it."""
    for value in (published, first_week, seen):
        if value:
            return str(value)[:10]
    return None


def _load_docs(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        "SELECT id, kind, title, summary, text, note, author, author_handle, section, published_at, seen_at "
        f"FROM items WHERE id IN ({marks}) AND duplicate_of_id IS NULL",
        list(ids),
    ).fetchall()
    docs: dict[int, dict[str, Any]] = {}
    for r in rows:
        docs[r[0]] = {
            "kind": r[1], "title": r[2], "summary": r[3], "text": r[4], "note": r[5],
            "author": " ".join(x for x in (r[6], r[7]) if x), "sections": [r[8]] if r[8] else [],
            "published": r[9], "seen": r[10], "tags": [], "week": None,
        }
    for item_id, tag in conn.execute(f"SELECT item_id, tag FROM item_tags WHERE item_id IN ({marks})", list(ids)):
        if item_id in docs:
            docs[item_id]["tags"].append(tag)
    for item_id, week, section in conn.execute(
        "SELECT e.item_id, d.week, e.section FROM digest_entries e JOIN digests d ON d.id = e.digest_id "
        f"WHERE e.item_id IN ({marks}) ORDER BY d.week",
        list(ids),
    ):
        doc = docs.get(item_id)
        if doc is None:
            continue
        doc["week"] = doc["week"] or week
        if section and section not in doc["sections"]:
            doc["sections"].append(section)
    return docs


def _fts_row(doc: dict[str, Any]) -> list[str]:
    return [
        segmented(doc["title"]),
        segmented(doc["summary"]),
        segmented(doc["text"]),
        segmented(doc["note"]),
        segmented(" ; ".join(doc["tags"])),
        segmented(doc["author"]),
        segmented(" ; ".join(doc["sections"])),
        segmented(doc["kind"]),
    ]


Progress = Callable[[int, int, str], None]
_PARALLEL_FROM = 2000
"""Queued items from which segmentation is spread over processes (jieba is pure Python)."""


def _init_worker(user_words: list[str]) -> None:
    prepare(Config.model_validate({"user_dictionary": user_words}))


@contextmanager
def _segmenter_pool(total: int, config: Config | None) -> Iterator[Any]:
    """A process pool for a bulk (re)index on a multi-core machine, else None. Forked workers
    inherit the loaded dictionary; spawned ones (macOS, Windows) load it with the user words."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = min(os.cpu_count() or 1, 8)
    if total < _PARALLEL_FROM or workers < 2:
        yield None
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "fork":
        segment("预热")  # load jieba once, before forking, so no worker pays for it
    words = list(config.user_dictionary) if config else []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                             initializer=_init_worker, initargs=(words,)) as pool:
        yield pool


def refresh_index(store: Store, config: Config | None = None, *, progress: Progress | None = None) -> int:
    """Index every queued item (new, changed or deleted since last time); returns how many.

    Each batch is one BEGIN IMMEDIATE transaction that reads the queue and the items, writes the
    index rows and clears exactly those queue entries, so a concurrent writer's change is either
    in this batch or queued for the next refresh; nothing falls between."""
    prepare(config)
    done = 0
    with _connect(store) as conn:
        ensure_schema(conn, segmenter_signature(config))
        total = conn.execute("SELECT count(DISTINCT item_id) FROM search_dirty").fetchone()[0]
        if not total:
            return 0
        now = datetime.now(UTC).isoformat()
        with _segmenter_pool(total, config) as pool:
            batch = _BATCH if pool is None else _BATCH * 10
            while True:
                with _write(conn):
                    ids = [r[0] for r in conn.execute(
                        "SELECT DISTINCT item_id FROM search_dirty ORDER BY item_id LIMIT ?", (batch,)
                    )]
                    if not ids:
                        break
                    docs = _load_docs(conn, ids)
                    if pool is None:
                        rows = [_fts_row(doc) for doc in docs.values()]
                    else:
                        rows = list(pool.map(_fts_row, docs.values(), chunksize=25))
                    marks = ",".join("?" * len(ids))
                    conn.execute(f"DELETE FROM search_fts WHERE rowid IN ({marks})", ids)
                    conn.execute(f"DELETE FROM search_docs WHERE item_id IN ({marks})", ids)
                    conn.executemany(
                        f"INSERT INTO search_fts (rowid, {', '.join(FIELDS)}) VALUES (?{', ?' * len(FIELDS)})",
                        [[item_id, *row] for item_id, row in zip(docs, rows, strict=True)],
                    )
                    conn.executemany(
                        "INSERT INTO search_docs (item_id, indexed_at, item_date) VALUES (?, ?, ?)",
                        [(item_id, now, _item_date(d["published"], d["week"], d["seen"])) for item_id, d in docs.items()],
                    )
                    conn.execute(f"DELETE FROM search_dirty WHERE item_id IN ({marks})", ids)
                    # Any change of the index bumps the generation: cached counts are keyed by it.
                    conn.execute(
                        "INSERT INTO search_meta (key, value) VALUES ('generation', '1') "
                        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                    )
                done += len(ids)
                if progress:
                    progress(min(done, total), total, "index")
    return done


def rebuild_index(store: Store, config: Config | None = None, *, progress: Progress | None = None) -> int:
    """Drop every index row and index all items again (``tidings index --rebuild``)."""
    prepare(config)
    with _connect(store) as conn:
        ensure_schema(conn, segmenter_signature(config))
        with _write(conn):
            conn.execute("DELETE FROM search_fts")
            conn.execute("DELETE FROM search_docs")
            conn.execute("DELETE FROM search_meta WHERE key = 'generation' OR key LIKE 'embed_checked:%'")
            conn.execute("DELETE FROM search_dirty")
            conn.execute("INSERT INTO search_dirty (item_id) SELECT id FROM items")
    refresh_index(store, config, progress=progress)
    with _connect(store) as conn:
        with _write(conn):
            conn.execute("INSERT INTO search_fts (search_fts) VALUES ('optimize')")
        return conn.execute("SELECT count(*) FROM search_docs").fetchone()[0]


def index_stats(store: Store) -> dict[str, int]:
    with _connect(store) as conn:
        return {
            "indexed": conn.execute("SELECT count(*) FROM search_docs").fetchone()[0],
            "queued": conn.execute("SELECT count(DISTINCT item_id) FROM search_dirty").fetchone()[0],
            "embeddings": conn.execute("SELECT count(*) FROM embeddings").fetchone()[0],
        }


# ------------------------------------------------------------------------------------------
# Query parsing
# ------------------------------------------------------------------------------------------

FILTER_KEYS = ("author", "tag", "section", "kind", "since", "until")
# A clause: optional "-", optional "key:", then a quoted phrase (ASCII or Chinese quotes) or a word.
_CLAUSE_RE = re.compile(r'(-?)(?:([A-Za-z]+):)?(?:"([^"]*)"?|“([^”]*)”?|「([^」]*)」?|(\S+))')

# Words that phrase a question rather than name its topic ("哪些文章讨论过 RAG 的评估指标？").
QUESTION_WORDS: frozenset[str] = frozenset(
    """哪些 哪个 哪篇 那篇 这篇 哪里 什么样 为什么 为何 是否 有没有 有哪些 是不是 吗 呢 讲 讲的 讲过 说 说过
    提到 提过 讨论 讨论过 介绍 介绍过 关于 帖子 推文 笔记 内容 存档 过 一下 一篇 请问 请 告诉 知道 想
    谈 谈到 聊 聊过 写 写过 里 哪 分享 分享过 收录 收录过 提及 涉及
    多少 多长 多久 几个 什么时候 时候
    what which how why who whom when where does did do is are was were about article articles post posts
    tweet tweets note notes archive any there tell me find show discuss discussed mention mentioned
    mentions talk talks talked anything something explain explained covered cover""".split()
)
QUERY_STOPWORDS = STOPWORDS | QUESTION_WORDS

# General tech vocabulary, Chinese ↔ English, for query expansion: a reader searching "向量数据库"
# wants the post that says "vector database", and BM25 alone cannot know that. Each set lists
# equivalent surface forms; ``search.synonyms`` in the config adds more.
SYNONYMS: list[list[str]] = [
    ["大模型", "大语言模型", "llm", "llms", "large language model", "large language models"],
    ["语言模型", "language model"],
    ["模型", "model", "models"],
    ["数据集", "dataset", "datasets", "data set"],
    ["可解释性", "interpretability", "explainability"],
    ["向量数据库", "vector database", "vector db", "向量库"],
    ["检索增强生成", "检索增强", "rag", "retrieval augmented generation", "retrieval-augmented generation"],
    ["提示词", "提示语", "prompt", "prompts"],
    ["提示词工程", "提示工程", "prompt engineering"],
    ["智能体", "agent", "agents", "ai agent"],
    ["嵌入", "embedding", "embeddings", "向量化"],
    ["微调", "fine-tuning", "fine-tune", "finetune", "fine tuning"],
    ["多模态", "multimodal", "multi-modal"],
    ["机器学习", "machine learning"],
    ["深度学习", "deep learning"],
    ["神经网络", "neural network", "neural networks"],
    ["强化学习", "reinforcement learning"],
    ["知识图谱", "knowledge graph"],
    ["知识库", "knowledge base"],
    ["自然语言处理", "nlp", "natural language processing"],
    ["计算机视觉", "computer vision"],
    ["文生图", "text-to-image", "text to image", "图像生成", "image generation"],
    ["文生视频", "text-to-video", "视频生成", "video generation"],
    ["语音识别", "speech recognition", "asr"],
    ["语音合成", "text-to-speech", "tts"],
    ["混合专家", "专家混合", "moe", "mixture of experts", "mixture-of-experts"],
    ["注意力机制", "attention mechanism", "self-attention", "自注意力"],
    ["上下文窗口", "上下文长度", "context window", "context length", "长上下文", "long context"],
    ["幻觉", "hallucination", "hallucinations"],
    ["量化", "quantization"],
    ["开源", "open source", "open-source"],
    ["代码生成", "code generation"],
    ["工作流", "workflow", "workflows"],
    ["云原生", "cloud native", "cloud-native"],
    ["容器", "container", "containers"],
    ["微服务", "microservice", "microservices"],
    ["服务网格", "service mesh"],
    ["可观测性", "observability"],
    ["垃圾回收", "garbage collection", "gc"],
    ["泛型", "generics", "generic"],
    ["并发", "concurrency", "concurrent"],
    ["协程", "goroutine", "goroutines", "coroutine", "coroutines"],
    ["内存泄漏", "memory leak", "memory leaks"],
    ["性能优化", "performance optimization", "performance tuning"],
    ["数据库", "database", "databases"],
    ["缓存", "cache", "caching"],
    ["消息队列", "message queue", "message queues", "mq"],
    ["分布式", "distributed"],
    ["负载均衡", "load balancing", "load balancer"],
    ["限流", "rate limiting", "rate limiter"],
    ["熔断", "circuit breaker"],
    ["高可用", "high availability"],
    ["一致性", "consistency"],
    ["分库分表", "sharding"],
    ["事务", "transaction", "transactions"],
    ["前端", "frontend", "front-end"],
    ["后端", "backend", "back-end"],
    ["浏览器", "browser", "browsers"],
    ["组件", "component", "components"],
    ["框架", "framework", "frameworks"],
    ["状态管理", "state management"],
    ["服务端渲染", "服务器端渲染", "ssr", "server-side rendering"],
    ["小程序", "mini program", "mini-program"],
    ["跨平台", "cross-platform", "cross platform"],
    ["构建工具", "build tool", "build tools", "bundler"],
    ["包管理器", "package manager"],
    ["编译器", "compiler", "compilers"],
    ["操作系统", "operating system"],
    ["命令行", "command line", "command-line", "cli"],
    ["正则表达式", "regular expression", "regex"],
    ["单元测试", "unit test", "unit tests", "unit testing"],
    ["代码审查", "code review"],
    ["设计模式", "design pattern", "design patterns"],
    ["最佳实践", "best practice", "best practices"],
    ["算法", "algorithm", "algorithms"],
    ["数据结构", "data structure", "data structures"],
    ["面试", "interview", "interviews"],
    ["爬虫", "crawler", "web scraping", "scraper"],
    ["搜索引擎", "search engine"],
    ["全文搜索", "全文检索", "full-text search", "full text search"],
    ["推荐系统", "recommendation system", "recommender system"],
    ["低代码", "low-code", "low code"],
    ["认证", "authentication"],
    ["授权", "authorization"],
    ["加密", "encryption"],
    ["可视化", "visualization"],
    ["教程", "tutorial", "tutorials"],
]


@dataclass
class Filters:
    authors: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    since: str | None = None
    until: str | None = None

    def merge(self, other: Filters) -> Filters:
        return Filters(
            authors=self.authors + other.authors, tags=self.tags + other.tags,
            sections=self.sections + other.sections, kinds=self.kinds + other.kinds,
            since=other.since or self.since, until=other.until or self.until,
        )

    def empty(self) -> bool:
        return not (self.authors or self.tags or self.sections or self.kinds or self.since or self.until)


@dataclass
class ParsedQuery:
    text: str
    """The free words, as typed (what embeddings see)."""
    phrases: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    filters: Filters = field(default_factory=Filters)


def date_bound(value: str, *, end: bool) -> str:
    """``2024``, ``2024-03`` or ``2024-03-10`` as an inclusive ISO date bound."""
    value = value.strip()
    try:
        if re.fullmatch(r"\d{4}", value):
            return f"{value}-12-31" if end else f"{value}-01-01"
        if re.fullmatch(r"\d{4}-\d{1,2}", value):
            year, month = (int(x) for x in value.split("-"))
            first = date(year, month, 1)
            if not end:
                return first.isoformat()
            following = date(year + (month == 12), month % 12 + 1, 1)
            return (following - timedelta(days=1)).isoformat()
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise UsageError(f"not a date: {value!r} (use YYYY, YYYY-MM or YYYY-MM-DD)") from exc


def parse_query(query: str) -> ParsedQuery:
    """Split a query into free words, "quoted phrases", -exclusions and key:value filters."""
    words: list[str] = []
    parsed = ParsedQuery(text="")
    for m in _CLAUSE_RE.finditer(query):
        negate, key, *quoted, bare = m.groups()
        phrase = next((q for q in quoted if q is not None), None)
        value = phrase if phrase is not None else bare or ""
        if key and key.lower() in FILTER_KEYS and value:
            key = key.lower()
            f = parsed.filters
            if key == "author":
                f.authors.append(value)
            elif key == "tag":
                f.tags.append(value)
            elif key == "section":
                f.sections.append(value)
            elif key == "kind":
                f.kinds.append(value)
            elif key == "since":
                f.since = date_bound(value, end=False)
            else:
                f.until = date_bound(value, end=True)
            continue
        if key:  # "http://…" or "C:…" is not a filter: keep the clause as typed
            value = f"{key}:{value}"
        if not value.strip() or value == "-":
            continue
        if negate:
            parsed.excludes.append(value)
        elif phrase is not None:
            parsed.phrases.append(phrase)
        else:
            words.append(value)
    parsed.text = " ".join(words)
    return parsed


@dataclass
class Group:
    """One concept of the query: a word, or a synonym set, any of whose forms may match."""

    label: str
    forms: list[list[str]]
    """Token sequences; a multi-token form must match as a phrase."""

    def fts(self) -> str:
        return "(" + " OR ".join(_phrase(form) for form in self.forms) + ")"


def _phrase(tokens: Sequence[str]) -> str:
    return '"' + " ".join(tokens).replace('"', '""') + '"'


def _synonym_sets(config: Config | None) -> list[list[list[str]]]:
    sets = SYNONYMS + (config.search.synonyms if config else [])
    out = []
    for forms in sets:
        segmented_forms = [[w for w, _s, _e in segment(form)] for form in forms]
        out.append([f for f in segmented_forms if f])
    return out


_synonym_cache: dict[str, list[list[list[str]]]] = {}


def synonym_sets(config: Config | None) -> list[list[list[str]]]:
    key = segmenter_signature(config) + json.dumps(config.search.synonyms if config else [], ensure_ascii=False)
    if key not in _synonym_cache:
        _synonym_cache[key] = _synonym_sets(config)
    return _synonym_cache[key]


def _is_single_cjk(token: str) -> bool:
    return len(token) == 1 and CJK_CHAR_RE.match(token) is not None


def query_groups(text: str, config: Config | None = None) -> list[Group]:
    """The free words of a query as concept groups: segmented like the index, question words and
    stop words dropped (unless nothing else is left), synonym sets expanded."""
    tokens = [w for w, _s, _e in segment(text)]
    sets = synonym_sets(config)
    groups: list[Group] = []
    i = 0
    while i < len(tokens):
        best: tuple[int, list[list[str]]] | None = None
        for forms in sets:
            for form in forms:
                n = len(form)
                if n and tokens[i : i + n] == form and (best is None or n > best[0]):
                    best = (n, forms)
        if best is not None:
            n, forms = best
            groups.append(Group(" ".join(tokens[i : i + n]), [list(f) for f in forms]))
            i += n
        else:
            groups.append(Group(tokens[i], [[tokens[i]]]))
            i += 1
    # Drop question/stop words, and lone CJK characters jieba left over ("讲", "用"): they match
    # almost everything and would decide whether an answer looks supported.
    content = [
        g for g in groups
        if len(g.forms) > 1 or (g.label not in QUERY_STOPWORDS and not _is_single_cjk(g.label))
    ]
    kept = content or [g for g in groups if g.label not in QUERY_STOPWORDS] or groups
    unique: dict[str, Group] = {}
    for g in kept:
        unique.setdefault(g.label, g)
    return list(unique.values())


def _phrase_expr(text: str) -> str | None:
    tokens = [w for w, _s, _e in segment(text)]
    return _phrase(tokens) if tokens else None


@dataclass
class CompiledQuery:
    parsed: ParsedQuery
    groups: list[Group]
    match: str | None
    """The full FTS5 expression (None: no positive terms, filters only)."""
    constraint: str | None
    """Phrases only: what every hybrid result must also satisfy."""
    exclude: str | None


def compile_query(query: str, config: Config | None = None, filters: Filters | None = None) -> CompiledQuery:
    parsed = parse_query(query)
    if filters is not None:
        parsed.filters = filters.merge(parsed.filters)
    groups = query_groups(parsed.text, config)
    phrases = [p for p in (_phrase_expr(x) for x in parsed.phrases) if p]
    excludes = [p for p in (_phrase_expr(x) for x in parsed.excludes) if p]
    positive: list[str] = []
    if groups:
        positive.append("(" + " OR ".join(g.fts() for g in groups) + ")")
    positive.extend(phrases)
    exclude = " OR ".join(excludes) if excludes else None
    match = None
    if positive:
        match = " AND ".join(positive)
        if exclude:
            match = f"({match}) NOT ({exclude})"
    constraint = " AND ".join(phrases) if phrases else None
    return CompiledQuery(parsed, groups, match, constraint, exclude)


# ------------------------------------------------------------------------------------------
# Filters as SQL over items / search_docs
# ------------------------------------------------------------------------------------------


def _section_patterns(value: str, config: Config | None) -> list[str]:
    """``section:AI`` matches "🌟 AI 相关"; an old section name also matches its new name."""
    values = [value]
    if config is not None:
        for old, new in config.classify.aliases.items():
            if value.lower() in old.lower():
                values.append(new)
    return [f"%{v.lower()}%" for v in values]


def filter_sql(filters: Filters, config: Config | None) -> tuple[list[str], list[Any]]:
    """WHERE clauses over ``items`` and ``search_docs``. Repeated authors, kinds or sections are
    alternatives (an item has one of each); repeated tags must all be present."""
    clauses: list[str] = []
    params: list[Any] = []
    if filters.authors:
        parts = []
        for a in filters.authors:
            handle = a.lstrip("@").lower()
            parts.append("(lower(items.author_handle) = ? OR lower(items.author) LIKE ?)")
            params += [handle, f"%{a.lower()}%"]
        clauses.append("(" + " OR ".join(parts) + ")")
    for tag in filters.tags:
        clauses.append("EXISTS (SELECT 1 FROM item_tags t WHERE t.item_id = items.id AND lower(t.tag) = ?)")
        params.append(tag.lstrip("#").lower())
    if filters.sections:
        parts = []
        for s in filters.sections:
            for pattern in _section_patterns(s, config):
                parts.append(
                    "(lower(items.section) LIKE ? OR EXISTS (SELECT 1 FROM digest_entries e "
                    "WHERE e.item_id = items.id AND lower(e.section) LIKE ?))"
                )
                params += [pattern, pattern]
        clauses.append("(" + " OR ".join(parts) + ")")
    if filters.kinds:
        clauses.append(f"items.kind IN ({','.join('?' * len(filters.kinds))})")
        params += [k.lower() for k in filters.kinds]
    if filters.since:
        clauses.append("search_docs.item_date >= ?")
        params.append(filters.since)
    if filters.until:
        clauses.append("search_docs.item_date <= ?")
        params.append(filters.until)
    return clauses, params


# ------------------------------------------------------------------------------------------
# Embeddings (hybrid search)
# ------------------------------------------------------------------------------------------


class Embedder(Protocol):
    """Anything that turns texts into vectors. ``model`` keys the cache."""

    model: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@dataclass
class LLMEmbedder:
    """The ``embed`` route of the model gateway (``tidings.llm.gateway``): an OpenAI-compatible endpoint
    (OpenAI, llama.cpp server, Ollama, vLLM …) or an in-process GGUF model."""

    llm: Any
    model: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            return [_pool(v) for v in self.llm.embed(list(texts))]
        except TidingsError as exc:
            raise SearchError(f"embedding with {self.model} failed: {exc}") from exc

    def close(self) -> None:
        self.llm.close()


def _pool(vector: Any) -> list[float]:
    """One vector per text. llama.cpp's server returns one vector per *token* for a model without
    a pooling head (a chat model such as SmolLM2); their mean is the usual sentence embedding."""
    if vector and isinstance(vector[0], list | tuple):
        import numpy as np

        return [float(x) for x in np.asarray(vector, dtype=np.float32).mean(axis=0)]
    return [float(x) for x in vector]


def embedder_from_config(config: Config | None, store: Store | None = None) -> Embedder | None:
    """The embedder ``routes.embed`` names, or None (BM25 alone) when none is configured.

    Only an explicit ``embed`` route counts: the gateway's fallback to the default model would
    send embedding requests to a chat-only model."""
    name = getattr(config.routes, "embed", None) if config is not None else None
    if not name or name not in config.models:  # type: ignore[union-attr]
        return None
    from ..llm.gateway import LLM, model_id

    assert config is not None
    return LLMEmbedder(LLM(config, store), model_id(config.models[name]))


def embed_text(title: str | None, summary: str | None, note: str | None, text: str | None, limit: int) -> str:
    parts = [p.strip() for p in (title, summary, note, text) if p and p.strip()]
    return "\n".join(parts)[:limit]


def _unit(vector: Sequence[float]) -> bytes:
    import numpy as np

    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return (v / norm if norm else v).tobytes()


def update_embeddings(store: Store, embedder: Embedder, config: Config | None = None) -> int:
    """Embed indexed items that have no vector for this model, or whose text changed since.

    Vectors are keyed by a hash of the embedded text, so each item is embedded once per model and
    again only when its title, summary, note or text changes. Returns how many were computed."""
    refresh_index(store, config)  # what is embedded is what is indexed, as of now
    limit = config.search.embed_max_chars if config else 512
    with _connect(store) as conn:
        marker_key = f"embed_checked:{embedder.model}"
        checked = _meta(conn, marker_key) or ""
        rows = conn.execute(
            "SELECT i.id, i.title, i.summary, i.note, substr(i.text, 1, ?), e.content_hash, d.indexed_at "
            "FROM search_docs d JOIN items i ON i.id = d.item_id "
            "LEFT JOIN embeddings e ON e.item_id = i.id AND e.model = ? "
            "WHERE e.id IS NULL OR d.indexed_at > ?",
            (limit, embedder.model, checked),
        ).fetchall()
        todo: list[tuple[int, str, str]] = []
        newest = checked
        for item_id, title, summary, note, text, old_hash, indexed_at in rows:
            newest = max(newest, indexed_at)
            content = embed_text(title, summary, note, text, limit)
            digest = hashlib.sha256(f"{limit}\n{content}".encode()).hexdigest()
            if content and digest != old_hash:
                todo.append((item_id, digest, content))
        for start in range(0, len(todo), 16):  # small requests: a local CPU server is slow per call
            batch = todo[start : start + 16]
            vectors = embedder.embed([c for _i, _h, c in batch])
            with _write(conn):
                conn.executemany(
                    "INSERT INTO embeddings (item_id, model, content_hash, vector) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(item_id, model) DO UPDATE SET content_hash = excluded.content_hash, "
                    "vector = excluded.vector",
                    [(i, embedder.model, h, _unit(v)) for (i, h, _c), v in zip(batch, vectors, strict=True)],
                )
        with _write(conn):
            conn.execute(
                "INSERT INTO search_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (marker_key, newest),
            )
    if todo:
        log.info("search: embedded %d item(s) with %s", len(todo), embedder.model)
    return len(todo)


def vector_ranking(
    conn: sqlite3.Connection, embedder: Embedder, query_text: str, allowed: set[int] | None, limit: int
) -> list[tuple[int, float]]:
    """Items by cosine similarity to the query (brute force: a personal archive is small)."""
    import numpy as np

    rows = conn.execute(
        "SELECT e.item_id, e.vector FROM embeddings e JOIN search_docs d ON d.item_id = e.item_id "
        "WHERE e.model = ?",
        (embedder.model,),
    ).fetchall()
    if allowed is not None:
        rows = [r for r in rows if r[0] in allowed]
    if not rows:
        return []
    query_vec = np.frombuffer(_unit(embedder.embed([query_text])[0]), dtype=np.float32)
    ids = [r[0] for r in rows]
    matrix = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    if matrix.shape[1] != query_vec.shape[0]:
        raise SearchError("cached embeddings have another dimension than the model's; run tidings index --rebuild")
    sims = matrix @ query_vec
    order = np.argsort(-sims)[:limit]
    return [(ids[i], float(sims[i])) for i in order]


def rrf(rankings: Sequence[Sequence[int]], k: int = 60) -> dict[int, float]:
    """Reciprocal rank fusion: score(d) = Σ 1 / (k + rank(d)), ranks from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item_id in enumerate(ranking, start=1):
            scores[item_id] = scores.get(item_id, 0.0) + 1.0 / (k + rank)
    return scores


# ------------------------------------------------------------------------------------------
# Search
# ------------------------------------------------------------------------------------------


@dataclass
class SearchHit:
    id: int
    url: str
    title: str | None
    score: float
    snippet: str
    section: str | None
    tags: list[str]
    author: str | None
    author_handle: str | None
    published_at: str | None
    date: str | None
    kind: str
    bm25_rank: int | None = None
    vector_rank: int | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["author"] = " ".join(x for x in (self.author, f"@{self.author_handle}" if self.author_handle else None) if x) or None
        return data


@dataclass
class SearchResult:
    hits: list[SearchHit]
    mode: str
    """``bm25``, ``hybrid`` or ``filter`` (no words: filtered items, newest first)."""
    compiled: CompiledQuery


def _weights(config: Config | None) -> list[float]:
    configured = config.search.weights if config else {}
    defaults = {"title": 10.0, "summary": 5.0, "text": 1.0, "note": 3.0, "tags": 6.0, "author": 4.0,
                "section": 1.0, "kind": 0.5}
    return [float(configured.get(f, defaults[f])) for f in FIELDS]


def _bm25_ranking(
    conn: sqlite3.Connection, compiled: CompiledQuery, clauses: list[str], params: list[Any],
    weights: list[float], limit: int,
) -> list[tuple[int, float]]:
    where = " AND ".join(["search_fts MATCH ?", *clauses])
    sql = (
        f"SELECT search_fts.rowid, bm25(search_fts, {', '.join(map(str, weights))}) AS s "
        "FROM search_fts JOIN items ON items.id = search_fts.rowid "
        "JOIN search_docs ON search_docs.item_id = search_fts.rowid "
        f"WHERE {where} ORDER BY s LIMIT ?"
    )
    try:
        rows = conn.execute(sql, [compiled.match, *params, limit]).fetchall()
    except sqlite3.OperationalError as exc:
        raise UsageError(f"cannot search for that: {exc}") from exc
    return [(r[0], -float(r[1])) for r in rows]


def _coordinate(conn: sqlite3.Connection, ranked: list[tuple[int, float]], groups: list[Group]) -> list[tuple[int, float]]:
    """Re-rank BM25 candidates by how many of the query's concepts they contain, weighted by rarity.

    FTS5's bm25() scores every phrase of the expression separately, so a synonym set ("LLM" OR
    "LLMs" OR "大语言模型" …) counts several times over in a long text and can drown the one rare
    concept the user was after ("interpretability"). Multiplying by the IDF-weighted share of the
    concepts present (Lucene's classic coordination factor) restores the balance."""
    if len(groups) < 2 or not ranked:
        return ranked
    ids = [i for i, _ in ranked]
    marks = ",".join("?" * len(ids))
    total = conn.execute("SELECT count(*) FROM search_docs").fetchone()[0] or 1
    weight: dict[int, float] = dict.fromkeys(ids, 0.0)
    all_weight = 0.0
    for g in groups:
        df = _df(conn, g)
        # A concept in more than 5% of the archive weighs little and costs the most to check
        # (FTS5 walks its whole posting list): it is left out of the balance.
        if df > total / 20:
            continue
        idf = _idf(total, df)
        all_weight += idf
        for (rowid,) in conn.execute(
            f"SELECT rowid FROM search_fts WHERE search_fts MATCH ? AND rowid IN ({marks})", [g.fts(), *ids]
        ):
            weight[rowid] += idf
    if not all_weight:
        return ranked
    rescored = [(i, s * (0.05 + weight[i] / all_weight)) for i, s in ranked]
    return sorted(rescored, key=lambda kv: -kv[1])


def _filtered_ids(
    conn: sqlite3.Connection, compiled: CompiledQuery, clauses: list[str], params: list[Any], limit: int | None
) -> list[int]:
    """Items passing the filters, the required phrases and the exclusions, newest first."""
    where = list(clauses)
    args = list(params)
    if compiled.constraint:
        where.append("search_docs.item_id IN (SELECT rowid FROM search_fts WHERE search_fts MATCH ?)")
        args.append(compiled.constraint)
    if compiled.exclude:
        where.append("search_docs.item_id NOT IN (SELECT rowid FROM search_fts WHERE search_fts MATCH ?)")
        args.append(compiled.exclude)
    sql = (
        "SELECT search_docs.item_id FROM search_docs JOIN items ON items.id = search_docs.item_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY search_docs.item_date DESC, search_docs.item_id DESC"
        + (" LIMIT ?" if limit else "")
    )
    return [r[0] for r in conn.execute(sql, args + ([limit] if limit else []))]


def _recency_factor(item_date: str | None, newest: date | None, config: Config | None) -> float:
    if not item_date or newest is None:
        return 1.0
    weight = config.search.recency_weight if config else 0.3
    half_life = config.search.recency_half_life_days if config else 180.0
    try:
        age = max(0, (newest - date.fromisoformat(item_date[:10])).days)
    except ValueError:
        return 1.0
    return 1.0 + weight * 0.5 ** (age / half_life)


def search(
    store: Store,
    query: str,
    *,
    config: Config | None = None,
    filters: Filters | None = None,
    limit: int = 10,
    recent: bool = False,
    embedder: Embedder | None = None,
    hybrid: bool = True,
    refresh: bool = True,
) -> SearchResult:
    """Search the archive. ``embedder`` (or the one configured) turns on hybrid ranking; without
    one, or when it fails, the ranking is BM25 alone."""
    if refresh:
        refresh_index(store, config)
    compiled = compile_query(query, config, filters)
    own_embedder = None
    if hybrid and embedder is None:
        embedder = own_embedder = embedder_from_config(config, store)
    if not hybrid:
        embedder = None
    try:
        return _search(store, compiled, config, embedder, limit, recent)
    finally:
        close = getattr(own_embedder, "close", None)
        if close is not None:
            close()


def _search(
    store: Store, compiled: CompiledQuery, config: Config | None, embedder: Embedder | None, limit: int,
    recent: bool,
) -> SearchResult:
    depth = max(limit * 4, 50)
    with _connect(store) as conn:
        clauses, params = filter_sql(compiled.parsed.filters, config)
        bm25: list[tuple[int, float]] = []
        if compiled.match:
            bm25 = _bm25_ranking(conn, compiled, clauses, params, _weights(config), max(depth, 100))
            bm25 = _coordinate(conn, bm25, compiled.groups)[:depth]
        vector: list[tuple[int, float]] = []
        if embedder is not None and compiled.parsed.text.strip():
            try:
                update_embeddings(store, embedder, config)
                allowed = None
                if clauses or compiled.constraint or compiled.exclude:
                    allowed = set(_filtered_ids(conn, compiled, clauses, params, None))
                vector = vector_ranking(conn, embedder, compiled.parsed.text, allowed, depth)
            except SearchError as exc:
                log.warning("search: %s; ranking by BM25 alone", exc)
                vector = []
        if vector:
            mode = "hybrid"
            fused = rrf([[i for i, _ in bm25], [i for i, _ in vector]], k=config.search.rrf_k if config else 60)
            scored = sorted(fused.items(), key=lambda kv: -kv[1])
        elif compiled.match:
            mode = "bm25"
            scored = bm25
        else:
            mode = "filter"
            ids = _filtered_ids(conn, compiled, clauses, params, depth) if not compiled.parsed.text.strip() else []
            scored = [(i, 0.0) for i in ids]
        dates = _dates(conn, [i for i, _ in scored])
        if recent and scored:
            known = [date.fromisoformat(d[:10]) for d in dates.values() if d]
            newest = _newest_date(conn) or (max(known) if known else None)
            scored = sorted(
                ((i, s * _recency_factor(dates.get(i), newest, config)) for i, s in scored), key=lambda kv: -kv[1]
            )
        top = scored[:limit]
        bm25_rank = {i: r for r, (i, _) in enumerate(bm25, start=1)}
        vector_rank = {i: r for r, (i, _) in enumerate(vector, start=1)}
        hits = _hits(conn, top, compiled, config, bm25_rank, vector_rank, dates)
    return SearchResult(hits, mode, compiled)


def _dates(conn: sqlite3.Connection, ids: list[int]) -> dict[int, str | None]:
    out: dict[int, str | None] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for item_id, d in conn.execute(
            f"SELECT item_id, item_date FROM search_docs WHERE item_id IN ({','.join('?' * len(chunk))})", chunk
        ):
            out[item_id] = d
    return out


def _newest_date(conn: sqlite3.Connection) -> date | None:
    value = conn.execute("SELECT max(item_date) FROM search_docs").fetchone()[0]
    try:
        return date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def _hits(
    conn: sqlite3.Connection, top: list[tuple[int, float]], compiled: CompiledQuery, config: Config | None,
    bm25_rank: dict[int, int], vector_rank: dict[int, int], dates: dict[int, str | None],
) -> list[SearchHit]:
    if not top:
        return []
    ids = [i for i, _ in top]
    marks = ",".join("?" * len(ids))
    items = {
        r[0]: r for r in conn.execute(
            "SELECT id, url, title, summary, text, note, section, author, author_handle, published_at, kind "
            f"FROM items WHERE id IN ({marks})", ids,
        )
    }
    tags: dict[int, list[str]] = {}
    for item_id, tag in conn.execute(
        f"SELECT item_id, tag FROM item_tags WHERE item_id IN ({marks}) ORDER BY id", ids
    ):
        tags.setdefault(item_id, []).append(tag)
    highlights: dict[int, tuple[str, ...]] = {}
    highlight_expr = _highlight_expr(compiled)
    if highlight_expr:
        cols = ", ".join(f"highlight(search_fts, {c}, '{_OPEN}', '{_CLOSE}')" for c in range(4))
        for row in conn.execute(
            f"SELECT rowid, {cols} FROM search_fts WHERE search_fts MATCH ? AND rowid IN ({marks})",
            [highlight_expr, *ids],
        ):
            highlights[row[0]] = tuple(row[1:])
    width = config.search.snippet_chars if config else 160
    hits = []
    for item_id, score in top:
        r = items.get(item_id)
        if r is None:
            continue
        originals = (r[2], r[3], r[4], r[5])  # title, summary, text, note: the highlight() column order
        hits.append(
            SearchHit(
                id=item_id, url=r[1], title=r[2], score=round(score, 6),
                snippet=build_snippet(originals, highlights.get(item_id), width, compiled),
                section=r[6], tags=tags.get(item_id, []), author=r[7], author_handle=r[8],
                published_at=_iso(r[9]), date=dates.get(item_id), kind=r[10],
                bm25_rank=bm25_rank.get(item_id), vector_rank=vector_rank.get(item_id),
            )
        )
    return hits


def _iso(value: Any) -> str | None:
    if not value:
        return None
    text = str(value)
    return text.replace(" ", "T", 1) if len(text) > 10 else text


def _highlight_expr(compiled: CompiledQuery) -> str | None:
    """What to highlight: the positive words and phrases (never the excluded ones)."""
    parts = [g.fts() for g in compiled.groups]
    parts += [p for p in (_phrase_expr(x) for x in compiled.parsed.phrases) if p]
    return " OR ".join(parts) if parts else None


# ------------------------------------------------------------------------------------------
# Snippets: FTS5 highlights segmented text; we map the marks back onto the original text
# ------------------------------------------------------------------------------------------


def _marked_words(highlighted: str) -> list[tuple[str, bool]]:
    """Words of a highlight() result, each with whether any of it lies between the markers.
    (A phrase match is one marked span over several words.) Walks words, not characters: a
    blog post's text column is tens of thousands of characters."""
    words: list[tuple[str, bool]] = []
    inside = False
    for raw in highlighted.split(" "):
        if not raw:
            continue
        if _OPEN not in raw and _CLOSE not in raw:
            words.append((raw, inside))
            continue
        marked = inside
        for ch in raw:
            if ch == _OPEN:
                inside = True
            elif ch == _CLOSE:
                inside = False
            elif inside:
                marked = True
        words.append((raw.replace(_OPEN, "").replace(_CLOSE, ""), marked))
    return words


def matched_spans(original: str, highlighted: str) -> list[tuple[int, int]]:
    """Offsets in ``original`` of the words FTS5 marked. The indexed words are, in order,
    substrings of the normalized original, so a forward search aligns them without re-running
    the segmenter."""
    norm, origin = _normalize(original[:MAX_INDEXED_CHARS])
    spans: list[tuple[int, int]] = []
    pos = 0
    for word, marked in _marked_words(highlighted):
        at = norm.find(word, pos)
        if at < 0:
            return spans  # the index is out of date for this text; keep what aligned
        end = at + len(word)
        pos = end
        if marked:
            if origin is None:
                spans.append((at, end))
            else:
                spans.append((origin[at], origin[end - 1] + 1))
    return spans


def _fallback_spans(original: str, compiled: CompiledQuery) -> list[tuple[int, int]]:
    """Without a highlight (the text matched nowhere), mark exact query words if present."""
    wanted = {tuple(form) for g in compiled.groups for form in g.forms if len(form) == 1}
    return [(s, e) for w, s, e in segment(original[:20_000]) if (w,) in wanted]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def render_snippet(original: str, spans: list[tuple[int, int]], width: int) -> str:
    """A window of about ``width`` characters around the densest cluster of matches, with the
    matched words wrapped in MARK_OPEN / MARK_CLOSE and the rest copied from the original."""
    if not spans:
        body = _clean(original).strip()
        return body[:width] + ("…" if len(body) > width else "")
    best_i, best_score = 0, -1.0
    for i, (s, _e) in enumerate(spans):
        inside = [original[a:b].lower() for a, b in spans[i:] if b <= s + width]
        score = len(set(inside)) + 0.01 * len(inside)
        if score > best_score:
            best_i, best_score = i, score
    first = spans[best_i][0]
    start = max(0, first - width // 4)
    # Start at a word or line boundary rather than mid-word when one is close.
    boundary = max(original.rfind(c, max(0, start - 12), first) for c in " \n，。,.；;：:、")
    if boundary >= 0 and boundary < first:
        start = boundary + 1
    end = min(len(original), start + width)
    inside = [(max(a, start), min(b, end)) for a, b in spans if b > start and a < end]
    merged: list[list[int]] = []
    for a, b in inside:
        if merged and not original[merged[-1][1] : a].strip():
            merged[-1][1] = b
        else:
            merged.append([a, b])
    pieces: list[str] = []
    pos = start
    for a, b in merged:
        pieces.append(_clean(original[pos:a]))
        pieces.append(MARK_OPEN + _clean(original[a:b]) + MARK_CLOSE)
        pos = b
    pieces.append(_clean(original[pos:end]))
    text = "".join(pieces).strip()
    return ("…" if start > 0 else "") + text + ("…" if end < len(original) else "")


def build_snippet(
    originals: tuple[str | None, ...], highlighted: tuple[str, ...] | None, width: int, compiled: CompiledQuery
) -> str:
    """Pick the field that shows the most matched words (summary, text, note; the title as a last
    resort, since it is shown anyway) and render a highlighted window of it."""
    order = (1, 2, 3, 0)
    best: tuple[int, int, list[tuple[int, int]]] | None = None
    for rank, col in enumerate(order):
        original = originals[col]
        if not original:
            continue
        if highlighted and highlighted[col] and _OPEN in highlighted[col]:
            spans = matched_spans(original, highlighted[col])
        else:
            spans = []
        distinct = len({original[a:b].lower() for a, b in spans})
        if distinct and (best is None or distinct > best[0] or (distinct == best[0] and rank < best[1])):
            best = (distinct, rank, spans)
    if best is not None:
        col = order[best[1]]
        return render_snippet(originals[col] or "", best[2], width)
    for col in order:  # nothing highlighted (a tag or author matched): the start of the best field
        original = originals[col]
        if original:
            return render_snippet(original, _fallback_spans(original, compiled), width)
    return ""


# ------------------------------------------------------------------------------------------
# Ask: passages, evidence, verified citations, refusal
# ------------------------------------------------------------------------------------------


@dataclass
class Passage:
    item_id: int
    field: str
    text: str
    """A verbatim slice of the item's field."""
    title: str | None = None
    url: str = ""
    coverage: float = 0.0
    matched: frozenset[str] = frozenset()


@dataclass
class Citation:
    item_id: int
    url: str
    title: str | None
    quote: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Answer:
    question: str
    answer: str
    confidence: float
    evidence: list[Citation]
    related: list[dict[str, Any]]
    refused: bool
    threshold: float
    citations_proposed: int = 0
    citations_dropped: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "confidence": round(self.confidence, 4),
            "evidence": [c.to_json() for c in self.evidence],
            "related": self.related,
            "refused": self.refused,
        }


@dataclass
class DraftAnswer:
    """What an LLM answerer returns: text with ``[n]`` tags and the quotes they stand for."""

    text: str
    citations: list[tuple[int, str]]
    """(index into the passages given, verbatim quote)."""


Answerer = Callable[[str, list[Passage]], DraftAnswer]
"""The LLM hook: write an answer from these passages only, citing each claim ``[n]``."""

_PARAGRAPH_RE = re.compile(r"\n\s*\n")
_MAX_PASSAGE = 400
_MAX_QUOTE = 240


def chunk(text: str, max_chars: int = _MAX_PASSAGE) -> list[str]:
    """Passages of ``text`` along paragraph boundaries; a long paragraph is cut at line ends and
    between sentences. Every passage is a slice of ``text``, so it is verbatim by construction."""
    passages: list[str] = []
    for paragraph in _PARAGRAPH_RE.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= max_chars:
            passages.append(paragraph)
            continue
        for line in paragraph.splitlines():
            line = line.strip()
            if len(line) <= max_chars:
                if line:
                    passages.append(line)
                continue
            start = end = 0
            pos = 0
            for sentence in sentences_of(line):
                at = line.find(sentence, pos)
                if at < 0:
                    continue
                if end > start and at + len(sentence) - start > max_chars:
                    passages.append(line[start:end])
                    start = at
                elif end == start:
                    start = at
                end = pos = at + len(sentence)
            if end > start:
                passages.append(line[start:end])
    return [p for p in passages if p.strip()]


def sentences_of(passage: str) -> list[str]:
    """Sentences of a passage, each verbatim (split line by line, so none is re-joined)."""
    from ..stages.summarize import split_sentences

    out: list[str] = []
    for line in passage.splitlines():
        out.extend(s for s in split_sentences(line) if s)
    return out


def is_verbatim(quote: str, fields: Sequence[str | None]) -> bool:
    """The citation check: the quote occurs, character for character, in one stored field."""
    if not quote or not quote.strip():
        return False
    return any(f and quote in f for f in fields)


_df_cache: dict[tuple[str, str], int] = {}


def _df(conn: sqlite3.Connection, group: Group) -> int:
    """Items containing the group, cached until the index changes (counting walks posting lists)."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    key = (f"{path}:{_meta(conn, 'generation')}", group.fts())
    if key not in _df_cache:
        if len(_df_cache) > 4096:
            _df_cache.clear()
        _df_cache[key] = conn.execute(
            "SELECT count(*) FROM search_fts WHERE search_fts MATCH ?", (group.fts(),)
        ).fetchone()[0]
    return _df_cache[key]


def _idf(total: int, df: int) -> float:
    return math.log(1.0 + (total - df + 0.5) / (df + 0.5))


def refine_groups(conn: sqlite3.Connection, groups: list[Group]) -> list[tuple[Group, int]]:
    """Groups with their document frequency, minus segmentation noise.

    jieba's HMM glues unknown character pairs into "words" ("库是" from "automaxprocs 库是做什么的");
    such a word that is in no dictionary and in no indexed item is noise, not a concept the archive
    lacks. It is cut again by the dictionary alone, and only its real words are kept. A word the
    dictionary knows ("世界杯") stays, absent or not: that absence is what refusal is about."""
    from ..textutil import _get_tokenizer

    out: list[tuple[Group, int]] = []
    for g in groups:
        df = _df(conn, g)
        word = g.label
        if df or len(g.forms) > 1 or not CJK_CHAR_RE.fullmatch(word[:1] or "x") or len(word) < 2:
            out.append((g, df))
            continue
        tok = _get_tokenizer()
        if tok.FREQ.get(word):
            out.append((g, df))
            continue
        for part in tok.lcut(word, HMM=False):
            if len(part) >= 2 and part not in QUERY_STOPWORDS and all(part != o.label for o, _ in out):
                sub = Group(part, [[part]])
                out.append((sub, _df(conn, sub)))
    return out


def _score_passages(passages: list[Passage], groups: list[Group], idf: dict[str, float]) -> None:
    """Coverage of each passage: the IDF-weighted share of the question's concepts it contains
    (with the item's title as context). Matching runs through an in-memory FTS5 table with the
    index's tokenizer, so stemming and phrases behave exactly as in search."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE p USING fts5(body, tokenize = 'porter unicode61 remove_diacritics 2')")
        db.executemany("INSERT INTO p (rowid, body) VALUES (?, ?)",
                       [(i, segmented(p.text)) for i, p in enumerate(passages)])
        matched: dict[int, set[str]] = {i: set() for i in range(len(passages))}
        for g in groups:
            for (rowid,) in db.execute("SELECT rowid FROM p WHERE p MATCH ?", (g.fts(),)):
                matched[rowid].add(g.label)
    finally:
        db.close()
    context: dict[int, set[str]] = {}
    for i, p in enumerate(passages):
        if p.field in ("title", "meta"):
            context.setdefault(p.item_id, set()).update(matched[i])
    total = sum(idf.values()) or 1.0
    for i, p in enumerate(passages):
        found = matched[i] | context.get(p.item_id, set())
        p.matched = frozenset(matched[i])
        p.coverage = sum(idf[g] for g in found) / total


def _sentence_coverage(sentence: str, groups: list[Group], idf: dict[str, float]) -> float:
    words = [w for w, _s, _e in segment(sentence)]
    total = sum(idf.values()) or 1.0
    score = 0.0
    for g in groups:
        if any(_contains(words, form) for form in g.forms):
            score += idf[g.label]
    return score / total


def _contains(words: list[str], form: list[str]) -> bool:
    n = len(form)
    if n == 1:  # a rough stem match, enough to pick a sentence inside an already-matched passage
        f = form[0]
        return any(w == f or (len(f) >= 4 and w.startswith(f)) or (len(w) >= 4 and f.startswith(w)) for w in words)
    return any(words[i : i + n] == form for i in range(len(words) - n + 1))


_URL_RE = re.compile(r"https?://\S+")
_LEADING_MARKUP_RE = re.compile(r"^(?:#{1,6}\s+|>\s*|[-*+]\s+|\d{1,2}[.)、]\s*|\|\s*)+")


def _url_share(sentence: str) -> float:
    """How much of a sentence is URLs: a link is a poor quote, the sentence around it is better."""
    return sum(len(m.group()) for m in _URL_RE.finditer(sentence)) / max(1, len(sentence))


def _strip_markup(sentence: str) -> str:
    """Drop leading Markdown (heading marks, quote marks, bullets): a slice, so still verbatim."""
    return sentence[_LEADING_MARKUP_RE.match(sentence).end() if _LEADING_MARKUP_RE.match(sentence) else 0 :].strip()


def _trim_quote(sentence: str, groups: list[Group]) -> str:
    """A long sentence is cut to a window around its first matched word; still a verbatim slice."""
    if len(sentence) <= _MAX_QUOTE:
        return sentence
    lowered = sentence.lower()
    first = min(
        (lowered.find(form[0]) for g in groups for form in g.forms if form and lowered.find(form[0]) >= 0),
        default=0,
    )
    start = max(0, min(first - _MAX_QUOTE // 4, len(sentence) - _MAX_QUOTE))
    return sentence[start : start + _MAX_QUOTE].strip()


def refusal_text(question: str) -> str:
    # Any Han character means a Chinese reader: "Haskell 的 monad 怎么用？" is mostly Latin letters.
    if has_cjk(question) or is_chinese(question):
        return "存档里没有关于这个问题的内容。"
    return "The archive has nothing on this."


def ask(
    store: Store,
    question: str,
    *,
    config: Config | None = None,
    filters: Filters | None = None,
    embedder: Embedder | None = None,
    hybrid: bool = True,
    answerer: Answerer | None = None,
    threshold: float | None = None,
    items: int = 8,
    max_evidence: int = 3,
) -> Answer:
    """Answer from the archive, citing only quotes that occur verbatim in the cited item.

    Offline the answer is extractive: the best supporting sentences, each cited. With
    ``answerer`` (an LLM) the answer is written from the retrieved passages and its citations are
    verified the same way; unverifiable ones are dropped, and if none survive the extractive
    answer is used. Evidence weaker than ``threshold`` gives a refusal with the nearest items
    listed as related, not as evidence."""
    if threshold is None:
        configured = config.search.refusal_threshold if config else None
        threshold = REFUSAL_THRESHOLD if configured is None else configured
    result = search(store, question, config=config, filters=filters, limit=items, embedder=embedder, hybrid=hybrid)
    groups = result.compiled.groups
    related = [{"item_id": h.id, "url": h.url, "title": h.title, "score": h.score} for h in result.hits[:5]]
    fields_of: dict[int, tuple[str | None, ...]] = {}
    passages: list[Passage] = []
    idf: dict[str, float] = {}
    with _connect(store) as conn:
        total = conn.execute("SELECT count(*) FROM search_docs").fetchone()[0] or 1
        refined = refine_groups(conn, groups)
        groups = [g for g, _df in refined]
        idf = {g.label: _idf(total, df) for g, df in refined}
        for hit in result.hits:
            row = conn.execute(
                "SELECT title, summary, note, substr(text, 1, 30000) FROM items WHERE id = ?", (hit.id,)
            ).fetchone()
            if row is None:
                continue
            fields_of[hit.id] = row
            # Who wrote it, its tags and section: context for "what did Karpathy say about …",
            # never quoted (a citation must come from the item's own words).
            meta = " ; ".join(x for x in (hit.author, hit.author_handle, *hit.tags, hit.section) if x)
            if meta:
                passages.append(Passage(hit.id, "meta", meta, hit.title, hit.url))
            for name, value in zip(("title", "summary", "note", "text"), row, strict=True):
                if not value:
                    continue
                pieces = [value.strip()] if name == "title" else chunk(value)
                passages.extend(Passage(hit.id, name, p, hit.title, hit.url) for p in pieces)
    if passages and groups:
        _score_passages(passages, groups, idf)
    # An item's best passage must itself match: a title that covers everything lends context, but
    # a passage with no word of the question is no evidence.
    candidates = sorted(
        (p for p in passages if p.matched and p.field != "meta"),
        key=lambda p: (-p.coverage, p.field != "summary", len(p.text)),
    )
    confidence = candidates[0].coverage if candidates else 0.0
    refused = confidence < threshold or not candidates
    answer = Answer(question, "", confidence, [], related, refused, threshold)
    if refused:
        answer.answer = refusal_text(question)
        return answer
    top_passages = _pick_passages(candidates, confidence, max_evidence)
    if answerer is not None:
        if _llm_answer(answer, answerer, question, top_passages, fields_of):
            return answer
    _extractive_answer(answer, top_passages, groups, idf, fields_of)
    if not answer.evidence:  # nothing survived verification: never show an unsupported answer
        answer.refused = True
        answer.answer = refusal_text(question)
    return answer


def _pick_passages(candidates: list[Passage], best: float, n: int) -> list[Passage]:
    """The best passage per item, for up to ``n`` items close to the best coverage."""
    picked: list[Passage] = []
    seen: set[int] = set()
    for p in candidates:
        if p.item_id in seen or p.coverage < 0.75 * best:
            continue
        picked.append(p)
        seen.add(p.item_id)
        if len(picked) == n:
            break
    return picked


def _cite(answer: Answer, passage: Passage, quote: str, fields_of: dict[int, tuple[str | None, ...]]) -> bool:
    answer.citations_proposed += 1
    if not is_verbatim(quote, fields_of.get(passage.item_id, ())):
        answer.citations_dropped += 1
        log.warning("ask: dropped a citation of item %d that is not verbatim: %r", passage.item_id, quote[:80])
        return False
    answer.evidence.append(Citation(passage.item_id, passage.url, passage.title, quote))
    return True


def _extractive_answer(
    answer: Answer, passages: list[Passage], groups: list[Group], idf: dict[str, float],
    fields_of: dict[int, tuple[str | None, ...]],
) -> None:
    parts: list[str] = []
    for passage in passages:
        sentences = [q for q in (_strip_markup(s) for s in sentences_of(passage.text)) if q] or [passage.text]
        best = max(sentences, key=lambda s: (_sentence_coverage(s, groups, idf) - _url_share(s), -abs(len(s) - 80)))
        quote = _trim_quote(best, groups)
        if any(quote == c.quote for c in answer.evidence):
            continue
        if _cite(answer, passage, quote, fields_of):
            parts.append(f"{quote} [{len(answer.evidence)}]")
    answer.answer = "\n".join(parts)


def _llm_answer(
    answer: Answer, answerer: Answerer, question: str, passages: list[Passage],
    fields_of: dict[int, tuple[str | None, ...]],
) -> bool:
    """Run the LLM hook; keep only verified citations and renumber the text's tags to match."""
    try:
        draft = answerer(question, passages)
    except TidingsError as exc:
        log.warning("ask: the answerer failed (%s); answering extractively", exc)
        return False
    numbers: dict[int, int] = {}
    for n, (index, quote) in enumerate(draft.citations, start=1):
        if 0 <= index < len(passages) and _cite(answer, passages[index], quote, fields_of):
            numbers[n] = len(answer.evidence)
        elif not 0 <= index < len(passages):
            answer.citations_proposed += 1
            answer.citations_dropped += 1
    if not answer.evidence:
        return False

    def renumber(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return f"[{numbers[n]}]" if n in numbers else ""

    answer.answer = re.sub(r" ?\[(\d+)\]", lambda m: (" " + renumber(m)) if renumber(m) else "", draft.text).strip()
    return True
