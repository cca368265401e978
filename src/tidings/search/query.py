"""Queries: what the user typed, parsed into words, "phrases", -exclusions and key:value
filters; the words grouped into concepts (synonym sets expanded) and compiled to one FTS5
expression; and the filters as SQL over ``items`` and ``search_docs``."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ..config import Config
from ..errors import UsageError
from ..textutil import CJK_CHAR_RE, STOPWORDS
from .segment import segment, segmenter_signature

FILTER_KEYS = ("author", "tag", "section", "kind", "since", "until")
# A clause: optional "-", optional "key:", then a quoted phrase (ASCII or Chinese quotes) or a word.
_CLAUSE_RE = re.compile(r'(-?)(?:([A-Za-z]+):)?(?:"([^"]*)"?|“([^”]*)”?|「([^」]*)」?|(\S+))')

# Words that phrase a question rather than name its topic ("哪些文章讨论过 RAG 的评估指标？").
QUESTION_WORDS: frozenset[str] = frozenset(
    """哪些 哪个 哪篇 那篇 这篇 哪里 什么样 为什么 为何 是否 有没有 有哪些 是不是 吗 呢 讲 讲的 讲过 说 说过
    提到 提过 讨论 讨论过 介绍 介绍过 关于 帖子 推文 笔记 内容 存档 过 一下 一篇 请问 请 告诉 知道 想
    谈 谈到 聊 聊过 写 写过 里 哪 分享 分享过 收录 收录过 提及 涉及
    多少 多长 多久 几个 什么时候 时候 现在 目前 如今 当前
    what which how why who whom when where does did do is are was were about article articles post posts
    tweet tweets note notes archive any there tell me find show discuss discussed mention mentioned
    mentions talk talks talked anything something explain explained covered cover now currently""".split()
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
    ["免费", "free", "free of charge"],
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
        """The group as an FTS5 expression over the archive's index: free-text columns only."""
        return free_text(self.expression())

    def expression(self) -> str:
        """The group as an FTS5 expression with no column filter (for tables of other shapes)."""
        return "(" + " OR ".join(_phrase(form) for form in self.forms) + ")"


FILTER_ONLY_COLUMNS = ("section", "kind")
"""Index columns that only ``section:`` / ``kind:`` filters reach. A section name is the curator's
label, not the item's words: "Rust" must not find Go articles because their section is
"Go & 云原生 & Rust 相关" (issue 16.3). The columns stay in the index for the filters' sake."""


def free_text(expression: str) -> str:
    """``expression`` restricted to the columns free words may match (an FTS5 column filter)."""
    return "- {" + " ".join(FILTER_ONLY_COLUMNS) + "} : (" + expression + ")"


class EmptyQuery(UsageError, ValueError):
    """A query with no words, no phrases and no filters: there is nothing to search for."""

    def __init__(self) -> None:
        super().__init__("type a query: words, \"a phrase\" or a filter such as section:AI or author:dotey")


def _phrase(tokens: Sequence[str]) -> str:
    return '"' + " ".join(tokens).replace('"', '""') + '"'


def _synonym_sets(config: Config | None) -> list[list[list[str]]]:
    sets = SYNONYMS + (config.search.synonyms if config else [])
    out = []
    for forms in sets:
        segmented_forms = [[w for w, _s, _e in segment(form)] for form in forms]
        out.append([f for f in segmented_forms if f])
    return out


_synonym_keys: dict[int, tuple[list[list[str]], int, str, str]] = {}


def synonyms_key(config: Config | None) -> str:
    """What the segmented synonym sets depend on (the segmenter and the configured sets): the key of
    every cache built from them. Remembered per list of sets (kept, so its id is not another's), as
    long as it has as many sets: writing the key out took a tenth of a search at 100k items."""
    synonyms = config.search.synonyms if config else []
    segmenter = segmenter_signature(config)
    known = _synonym_keys.get(id(synonyms))
    if known is not None and known[0] is synonyms and known[1] == len(synonyms) and known[2] == segmenter:
        return known[3]
    key = segmenter + json.dumps(synonyms, ensure_ascii=False)
    if len(_synonym_keys) > 256:
        _synonym_keys.clear()
    _synonym_keys[id(synonyms)] = (synonyms, len(synonyms), segmenter, key)
    return key


_synonym_cache: dict[str, tuple[list[list[list[str]]], dict[str, list[tuple[int, list[list[str]]]]]]] = {}


def _synonyms(config: Config | None) -> tuple[list[list[list[str]]], dict[str, list[tuple[int, list[list[str]]]]]]:
    """The segmented synonym sets, and each form's (length, set) under its first word, in the sets'
    order: a query word is looked up there instead of compared with every form of every set."""
    key = synonyms_key(config)
    if key not in _synonym_cache:
        sets = _synonym_sets(config)
        by_first: dict[str, list[tuple[int, list[list[str]]]]] = {}
        for forms in sets:
            for form in forms:
                by_first.setdefault(form[0], []).append((len(form), forms))
        _synonym_cache[key] = (sets, by_first)
    return _synonym_cache[key]


def synonym_sets(config: Config | None) -> list[list[list[str]]]:
    return _synonyms(config)[0]


def _is_single_cjk(token: str) -> bool:
    return len(token) == 1 and CJK_CHAR_RE.match(token) is not None


def query_groups(text: str, config: Config | None = None) -> list[Group]:
    """The free words of a query as concept groups: segmented like the index, question words and
    stop words dropped (unless nothing else is left), synonym sets expanded."""
    tokens = [w for w, _s, _e in segment(text)]
    by_first = _synonyms(config)[1]
    groups: list[Group] = []
    i = 0
    while i < len(tokens):
        best: tuple[int, list[list[str]]] | None = None
        for n, forms in by_first.get(tokens[i], ()):  # the longest form wins; on a tie the first set
            if (best is None or n > best[0]) and tokens[i : i + n] in forms:
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


def phrase_expr(text: str) -> str | None:
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
    phrases = [p for p in (phrase_expr(x) for x in parsed.phrases) if p]
    excludes = [p for p in (phrase_expr(x) for x in parsed.excludes) if p]
    if not groups and not phrases and parsed.filters.empty():
        # Nothing to rank by and nothing to filter on: any answer would be arbitrary items.
        raise EmptyQuery()
    positive: list[str] = []
    if groups:
        positive.append("(" + " OR ".join(g.expression() for g in groups) + ")")
    positive.extend(phrases)
    exclude = free_text(" OR ".join(excludes)) if excludes else None
    match = None
    if positive:
        match = free_text(" AND ".join(positive))
        if exclude:
            match = f"{match} NOT {exclude}"
    constraint = free_text(" AND ".join(phrases)) if phrases else None
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

