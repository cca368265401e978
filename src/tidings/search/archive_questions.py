"""Offline templates for questions about the archive: what is asked (a count, a ranking, a series
or a breakdown), of what (items, digests, tags, authors, sites), grouped by which dimension, over
which period and with which filters. Each part is recognised on its own (sections from the
configuration, tags, authors and sites from the archive, kinds and periods from word lists), so
new phrasings combine them; the SQL written from them is checked and run like a model's.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from ..textutil import has_cjk
from .archive_sql import quote

# --- what kind of question --------------------------------------------------------------------

_COUNT_RE = re.compile(
    r"多少|几篇|几条|几期|几个|几位|几次|几份|数量|总数|总共|一共|how\s+many|number\s+of|count\s+(?:of|the)|\bcount\b", re.I)
_TOP_RE = re.compile(
    r"最多|最常|最活跃|最频繁|最高|最少|排名|排行|前\s*(?:\d+|[一二三四五六七八九十两]+)\s*(?:个|名|位)|"
    r"\btop\s*\d*\b|\bmost\b|\bfewest\b|\bleast\b|\branking\b", re.I)
_SERIES_RE = re.compile(
    r"每个?月|按月|逐月|各月|每年|按年|逐年|各年|monthly|yearly|per\s+(?:month|year)|each\s+(?:month|year)|"
    r"by\s+(?:month|year)|every\s+(?:month|year)|month\s+by\s+month", re.I)
_YEARLY_RE = re.compile(r"每年|按年|逐年|各年|yearly|per\s+year|each\s+year|by\s+year|every\s+year", re.I)
_BREAKDOWN_RE = re.compile(
    r"(?:各|每)个?(?:栏目|分类|板块|版块|类别|作者|标签|网站|站点|域名|类型|来源|公众号)|分别|"
    r"(?:by|per|each|for\s+each)\s+(?:section|category|author|tag|site|website|domain|kind|type|source|account)s?\b",
    re.I)
_ARCHIVE_NOUN_RE = re.compile(
    r"篇|文章|条|链接|帖子|推文|笔记|博客|博文|期|周报|汇总|标签|作者|公众号|网站|站点|域名|栏目|分类|板块|版块|"
    r"收录|收了|收藏|存档|归档|内容|"
    r"\b(?:items?|articles?|links?|posts?|notes?|blogs?|digests?|issues?|tags?|authors?|sources?|sections?|"
    r"categor(?:y|ies)|domains?|sites?|websites?|entries|archive|accounts?|tweets?|newsletters?)\b", re.I)

# --- what is counted and by what -------------------------------------------------------------

_DIGEST_RE = re.compile(r"几期|期数|多少期|每期|各有几期|周报|汇总|\bdigests?\b|\bissues?\b|\bnewsletters?\b", re.I)
_DIMENSIONS: list[tuple[str, re.Pattern[str]]] = [
    ("account", re.compile(r"公众号|\bwechat\s+accounts?\b|\bofficial\s+accounts?\b", re.I)),
    ("tag", re.compile(r"标签|\btags?\b", re.I)),
    ("section", re.compile(r"栏目|分类|板块|版块|类别|\bsections?\b|\bcategor(?:y|ies)\b", re.I)),
    ("domain", re.compile(r"网站|站点|域名|网址|\bsites?\b|\bwebsites?\b|\bdomains?\b", re.I)),
    ("source", re.compile(r"来源|订阅源|\bsources?\b|\bfeeds?\b", re.I)),
    ("kind", re.compile(r"类型|种类|\bkinds?\b|\btypes?\b", re.I)),
    ("author", re.compile(r"作者|博主|谁|哪位|哪个人|\bwho\b|\bauthors?\b|\bwriters?\b|\bposters?\b", re.I)),
    ("month", re.compile(r"哪个月|哪一个月|哪月|月份|\bwhich\s+month\b|\bwhat\s+month\b", re.I)),
    ("year", re.compile(r"哪一年|哪年|年份|\bwhich\s+year\b|\bwhat\s+year\b", re.I)),
]
_DISTINCT_TARGETS: list[tuple[str, re.Pattern[str]]] = [
    ("tags", re.compile(r"(?:多少|几)(?:个|种)(?:不同的?)?标签|how\s+many\s+(?:different\s+|distinct\s+)?tags", re.I)),
    ("authors", re.compile(r"(?:多少|几)(?:个|位|名)(?:不同的?)?作者|how\s+many\s+(?:different\s+|distinct\s+)?authors", re.I)),
    ("domains", re.compile(r"(?:多少|几)(?:个|家)(?:不同的?)?(?:网站|站点|域名)|how\s+many\s+(?:different\s+|distinct\s+)?(?:sites|websites|domains)", re.I)),
    ("accounts", re.compile(r"(?:多少|几)(?:个|家)(?:不同的?)?公众号|how\s+many\s+(?:different\s+|distinct\s+)?(?:wechat\s+)?accounts", re.I)),
]
_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("blog", re.compile(r"博客|博文|\bblog(?:\s+posts?)?\b", re.I)),
    ("note", re.compile(r"笔记|\bnotes?\b", re.I)),
    ("post", re.compile(r"帖子|推文|动态|\bposts?\b|\btweets?\b", re.I)),
]
_SITE_NAMES = {"github": "github.com", "掘金": "juejin.cn", "juejin": "juejin.cn", "知乎": "zhihu.com",
               "zhihu": "zhihu.com", "csdn": "csdn.net", "博客园": "cnblogs.com", "cnblogs": "cnblogs.com",
               "微信": "mp.weixin.qq.com", "wechat": "mp.weixin.qq.com", "公众号文章": "mp.weixin.qq.com"}
_DOMAIN_RE = re.compile(r"(?<![\w.])((?:[a-z0-9-]+\.)+(?:com|cn|org|net|io|dev|me|de|ai|co|so|app|blog))(?![\w.])", re.I)
_TAG_RE = re.compile(
    r"(?:标签\s*(?:为|是|:|：)|标签\s*(?=[“\"'「#])|\btagged(?:\s+with)?\s|\btag\s*[:：=])\s*[“\"'「#]?([^\s“”\"'「」，。？?、]+)",
    re.I)
"""An explicit tag value: 标签为 X, 标签“X”, tagged X, tag: X (never the word after "tags")."""
_TOPIC_RE = re.compile(
    r"(?:关于|讨论|提到|涉及|讲)(?:了|过)?\s*[“\"'「]?(?:([A-Za-z0-9.+#\-]+)|([\u4e00-\u9fff]{2,8}?)[”\"'」]?\s*(?:的|了|过|$))|"
    r"\b(?:about|mention(?:ing|s)?|on)\s+[“\"']?([A-Za-z0-9.+#\-]{2,})", re.I)
_TOP_N_RE = re.compile(r"前\s*(\d+|[一二三四五六七八九十两]+)|\btop\s*(\d+)", re.I)
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}


@dataclass
class Period:
    start: date
    end: date
    """Exclusive."""
    label_zh: str
    label_en: str


@dataclass
class Vocabulary:
    """What the archive holds, for recognising filters: section words, tags, authors."""

    sections: dict[str, str]
    """A word of a section's name ("AI", "Go", "前端", an alias's word) -> the section."""
    tags: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)


@dataclass
class Intent:
    kind: str
    """count | top | series | breakdown."""
    target: str = "items"
    """items | digests | tags | authors | domains | accounts."""
    dimension: str | None = None
    period: Period | None = None
    filters: list[tuple[str, str]] = field(default_factory=list)
    """(what, value): section, kind, tag, author, domain, topic."""
    n: int = 5
    english: bool = False
    least: bool = False


def looks_like_archive_question(question: str) -> bool:
    """A count, ranking or series asked about things the archive holds. "哪些文章讨论过 RAG 的评估
    指标？" lists content (no count or ranking); "How many parameters does Llama have?" counts
    something that is not in the archive's vocabulary: both stay with the content ask."""
    if not _ARCHIVE_NOUN_RE.search(question):
        return False
    return bool(_COUNT_RE.search(question) or _TOP_RE.search(question) or _SERIES_RE.search(question)
                or _BREAKDOWN_RE.search(question))


def question_kind(question: str) -> str | None:
    if _SERIES_RE.search(question):
        return "series"
    if _BREAKDOWN_RE.search(question):
        return "breakdown"
    if _TOP_RE.search(question):
        return "top"
    if _COUNT_RE.search(question):
        return "count"
    return None


# --- periods ----------------------------------------------------------------------------------

_EN_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_EN_MONTHS.update({name.lower(): number for number, name in enumerate(calendar.month_abbr) if name})


def _month(year: int, month: int) -> tuple[date, date]:
    start = date(year, month, 1)
    return start, (date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1))


def _cn_number(text: str) -> int:
    if text.isdigit():
        return int(text)
    if text.startswith("十"):
        return 10 + _CN_DIGITS.get(text[1:], 0)
    if "十" in text:
        tens, _, ones = text.partition("十")
        return _CN_DIGITS.get(tens, 1) * 10 + _CN_DIGITS.get(ones, 0)
    return _CN_DIGITS.get(text, 1)


def parse_period(question: str, today: date) -> Period | None:
    """The time span a question names, relative ones counted from ``today``."""
    q = question
    if m := re.search(r"(\d{4})\s*年\s*(\d{1,2})\s*月", q):
        y, mo = int(m.group(1)), int(m.group(2))
        if 1 <= mo <= 12:
            return Period(*_month(y, mo), f"{y} 年 {mo} 月", f"{calendar.month_name[mo]} {y}")
    if m := re.search(r"(?<!\d)(\d{4})-(\d{1,2})(?![\d-])", q):
        y, mo = int(m.group(1)), int(m.group(2))
        if 1 <= mo <= 12:
            return Period(*_month(y, mo), f"{y} 年 {mo} 月", f"{calendar.month_name[mo]} {y}")
    if m := re.search(r"\b(" + "|".join(sorted(_EN_MONTHS, key=len, reverse=True)) + r")\.?\s+(\d{4})\b", q, re.I):
        mo, y = _EN_MONTHS[m.group(1).lower()], int(m.group(2))
        return Period(*_month(y, mo), f"{y} 年 {mo} 月", f"{calendar.month_name[mo]} {y}")
    if m := re.search(r"(?<!\d)((?:19|20)\d{2})\s*年|\b(?:in|during|for|of|since)?\s*((?:19|20)\d{2})\b", q):
        y = int(m.group(1) or m.group(2))
        return Period(date(y, 1, 1), date(y + 1, 1, 1), f"{y} 年", str(y))
    this_month = _month(today.year, today.month)
    if re.search(r"上个?月|\blast\s+month\b|\bprevious\s+month\b", q, re.I):
        start = (this_month[0] - timedelta(days=1)).replace(day=1)
        return Period(start, this_month[0], "上个月", "last month")
    if re.search(r"本月|这个月|这月|\bthis\s+month\b", q, re.I):
        return Period(*this_month, "本月", "this month")
    if re.search(r"今年|\bthis\s+year\b", q, re.I):
        return Period(date(today.year, 1, 1), date(today.year + 1, 1, 1), "今年", "this year")
    if re.search(r"去年|\blast\s+year\b", q, re.I):
        return Period(date(today.year - 1, 1, 1), date(today.year, 1, 1), "去年", "last year")
    if m := re.search(r"(?:最近|过去|近)\s*(\d+|[一二三四五六七八九十两]+)\s*(?:个)?\s*(天|周|星期|月)|"
                      r"\b(?:last|past)\s+(\d+)\s+(day|week|month)s?\b", q, re.I):
        count = _cn_number(m.group(1)) if m.group(1) else int(m.group(3))
        unit = (m.group(2) or m.group(4)).lower()
        days = {"天": 1, "day": 1, "周": 7, "星期": 7, "week": 7, "月": 30, "month": 30}[unit] * count
        return Period(today - timedelta(days=days - 1), today + timedelta(days=1), m.group(0).strip(), m.group(0).strip())
    week_start = today - timedelta(days=today.weekday())
    if re.search(r"上周|上个星期|\blast\s+week\b", q, re.I):
        return Period(week_start - timedelta(days=7), week_start, "上周", "last week")
    if re.search(r"本周|这周|这个星期|\bthis\s+week\b", q, re.I):
        return Period(week_start, week_start + timedelta(days=7), "本周", "this week")
    return None


# --- filters ----------------------------------------------------------------------------------


def section_words(section_names: Sequence[str], aliases: dict[str, str]) -> dict[str, str]:
    """Each word of a section's name (emoji, "相关" and "&" dropped) -> the section's current name."""
    words: dict[str, str] = {}
    for name, target in [*((n, n) for n in section_names), *aliases.items()]:
        for word in re.split(r"[\s&]+", re.sub(r"相关|[^\w\s&.+#-]", " ", name)):
            if word and word.lower() not in {"其他", "other", "others"}:
                words.setdefault(word, target)
    return words


def _mentions(question: str, word: str) -> bool:
    """``word`` in ``question``: a whole word for Latin words (short ones in their case, "Go" is not
    "go"), anywhere for Chinese."""
    if has_cjk(word):
        return word in question
    flags = 0 if len(word) <= 2 and not has_cjk(question) else re.I
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", question, flags) is not None


def find_filters(question: str, vocab: Vocabulary, dimension: str | None) -> list[tuple[str, str]]:
    filters: list[tuple[str, str]] = []
    topic_match = _TOPIC_RE.search(question)
    topic = next((g for g in topic_match.groups() if g), None) if topic_match else None
    if dimension != "section":
        for word, section in sorted(vocab.sections.items(), key=lambda kv: -len(kv[0])):
            # "about Rust" is narrower than the section that holds Rust with Go: the topic wins.
            if _mentions(question, word) and (topic or "").lower() != word.lower():
                filters.append(("section", section))
                break
    if dimension != "kind":
        for kind, pattern in _KINDS:
            if pattern.search(question):
                filters.append(("kind", kind))
                break
    if dimension != "tag":
        tag_match = _TAG_RE.search(question)
        if tag_match and tag_match.group(1).lower() not in {"的", "最多", "most"}:
            filters.append(("tag", _known(tag_match.group(1), vocab.tags)))
    if dimension not in ("author", "account"):
        for author in vocab.authors:
            if len(author) >= 2 and _mentions(question, author.lstrip("@")):
                filters.append(("author", author))
                break
    if dimension != "domain":
        domain = _domain_in(question)
        if domain:
            filters.append(("domain", domain))
    if topic and not any(topic == value for _k, value in filters):
        filters.append(("topic", topic))
    return filters


def _known(word: str, vocabulary: Sequence[str]) -> str:
    """``word`` as the archive spells it, when it holds it in another case."""
    for known in vocabulary:
        if known.lower() == word.lower():
            return known
    return word


def _domain_in(question: str) -> str | None:
    m = _DOMAIN_RE.search(question)
    if m:
        host = m.group(1).lower()
        return host[4:] if host.startswith("www.") else host
    for name, host in _SITE_NAMES.items():
        if _mentions(question, name) and not re.search(r"公众号(?!文章)", question):
            return host
    return None


def _top_n(question: str) -> int:
    m = _TOP_N_RE.search(question)
    if not m:
        return 5
    return max(1, min(50, _cn_number(m.group(1)) if m.group(1) else int(m.group(2))))


def parse_question(question: str, vocab: Vocabulary, today: date) -> Intent | None:
    """The template intent of an archive question; None when it is not one or a part is missing."""
    if not looks_like_archive_question(question):
        return None
    kind = question_kind(question)
    if kind is None:
        return None
    intent = Intent(kind=kind, english=not has_cjk(question), n=_top_n(question))
    intent.least = bool(re.search(r"最少|\bfewest\b|\bleast\b", question, re.I))
    for target, pattern in _DISTINCT_TARGETS:
        if kind == "count" and pattern.search(question):
            intent.target = target
    if intent.target == "items" and _DIGEST_RE.search(question):
        intent.target = "digests"
    if kind == "series":
        intent.dimension = "year" if _YEARLY_RE.search(question) else "month"
    elif kind in ("top", "breakdown"):
        intent.dimension = next((name for name, pattern in _DIMENSIONS if pattern.search(question)), None)
        if intent.dimension is None:
            return None
    intent.period = parse_period(question, today)
    intent.filters = find_filters(question, vocab, intent.dimension)
    if intent.target == "digests" and (intent.dimension not in (None, "month", "year") or
                                       any(k != "topic" for k, _v in intent.filters)):
        intent.target = "items"  # "AI 栏目每期几篇" is about the items the digests list
    return intent


# --- SQL --------------------------------------------------------------------------------------

_LABELS = {
    "section": "a.section", "author": "a.author", "account": "a.author", "domain": "a.domain", "tag": "t.tag",
    "kind": "a.kind", "source": "a.source", "month": "a.month", "year": "a.year",
}


def _where(intent: Intent, date_column: str) -> list[str]:
    conditions: list[str] = []
    if intent.period:
        conditions.append(f"{date_column} >= {quote(intent.period.start.isoformat())}")
        conditions.append(f"{date_column} < {quote(intent.period.end.isoformat())}")
    for what, value in intent.filters:
        if what == "section":
            conditions.append(f"a.section = {quote(value)}")
        elif what == "kind":
            conditions.append(f"a.kind = {quote(value)}")
        elif what == "tag":
            conditions.append(f"EXISTS (SELECT 1 FROM archive_tags x WHERE x.item_id = a.id AND lower(x.tag) = lower({quote(value)}))")
        elif what == "author":
            conditions.append(f"(a.author = {quote(value)} OR a.handle = {quote(value)})")
        elif what == "domain":
            conditions.append(f"(a.domain = {quote(value)} OR a.domain LIKE {quote('%.' + value)})")
        elif what == "topic":
            conditions.append(f"lower(a.title) LIKE {quote('%' + value.lower() + '%')}")
    if intent.dimension == "account" or intent.target == "accounts":
        conditions.append("a.domain = 'mp.weixin.qq.com'")
    return conditions


def build_sql(intent: Intent) -> str:
    """The SQL over the archive views that answers ``intent``."""
    if intent.target == "digests":
        conditions = []
        if intent.period:
            conditions = [f"week_end >= {quote(intent.period.start.isoformat())}",
                          f"week_end < {quote(intent.period.end.isoformat())}"]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        if intent.kind == "count":
            return f"SELECT count(*) AS digests FROM archive_digests{where}"
        label = "year" if intent.dimension == "year" else "month"
        order = f"{label}" if intent.kind == "series" else f"digests {'ASC' if intent.least else 'DESC'}, {label}"
        return f"SELECT {label}, count(*) AS digests FROM archive_digests{where} GROUP BY {label} ORDER BY {order}"
    conditions = _where(intent, "a.dated_on")
    if intent.kind == "count":
        what = {"items": "count(*) AS items", "tags": "count(DISTINCT t.tag) AS tags",
                "authors": "count(DISTINCT a.author) AS authors", "domains": "count(DISTINCT a.domain) AS sites",
                "accounts": "count(DISTINCT a.author) AS accounts"}[intent.target]
        join = " JOIN archive_tags t ON t.item_id = a.id" if intent.target == "tags" else ""
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {what} FROM archive_items a{join}{where}"
    label = _LABELS[intent.dimension or "month"]
    join = " JOIN archive_tags t ON t.item_id = a.id" if intent.dimension == "tag" else ""
    conditions.append(f"{label} IS NOT NULL")
    where = f" WHERE {' AND '.join(conditions)}"
    if intent.kind == "series":
        order = label
    else:
        order = f"items {'ASC' if intent.least else 'DESC'}, {label}"
    limit = f" LIMIT {max(intent.n, 10)}" if intent.kind == "top" else ""
    return f"SELECT {label} AS {intent.dimension}, count(*) AS items FROM archive_items a{join}{where} GROUP BY {label} ORDER BY {order}{limit}"
