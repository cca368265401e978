"""Colloquial words for technical terms, as people type them in questions (issue 16).

Each set lists equivalent surface forms, like ``query.SYNONYMS``; search adds them to the query's
synonym sets (:func:`with_colloquial`). They were written from the misses of the *calibration*
half of ``evals/natural.jsonl`` only (the held-out half never informed them), and each is general
vocabulary rather than a question's answer: a reader who asks about models "一本正经地胡说八道"
means hallucination, whatever the archive holds.
"""

from __future__ import annotations

from typing import Any

from ..config import Config

COLLOQUIAL: list[list[str]] = [
    ["胡说八道", "一本正经地胡说八道", "瞎编", "编造", "幻觉", "hallucination", "hallucinations", "hallucinate"],
    ["项目说明文件", "项目说明", "claude.md", "agents.md"],
    ["编程助手", "coding agent", "coding assistant", "编程智能体"],
    ["不一样", "不一致", "不确定", "确定性", "nondeterminism", "nondeterministic", "deterministic"],
    ["上下文", "context"],
    ["塞满", "占满", "占用", "撑爆"],
    ["上学", "教育", "education"],
    ["指令", "instruction", "instructions"],
    ["遵循", "遵守", "follow"],
    ["前沿模型", "frontier model", "frontier models", "frontier llms"],
]


_copies: dict[int, tuple[Config, Any, list[list[str]], int, list[str], Config]] = {}


def with_colloquial(config: Config | None) -> Config:
    """``config`` with the colloquial sets added to its ``search.synonyms`` (a copy, for what reads
    the synonym sets and the segmenter: every caller passes it to :mod:`.query` or
    :func:`.index.compound_forms`). The copy is made once per config and kept while its search
    section, synonym list (and its length) and user dictionary are the same objects: two pydantic
    copies were a twentieth of a search at 100k items, and a new list each time defeated the caches
    keyed by the sets (:func:`.query.synonyms_key`)."""
    base = config if config is not None else Config()
    own = base.search.synonyms
    known = _copies.get(id(base))
    if (known is not None and known[0] is base and known[1] is base.search and known[2] is own
            and known[3] == len(own) and known[4] is base.user_dictionary):
        return known[5]
    search = base.search.model_copy(update={"synonyms": [*own, *COLLOQUIAL]})
    copy = base.model_copy(update={"search": search})
    if len(_copies) > 256:
        _copies.clear()
    if config is not None:  # a default made here is new every time: nothing to find again
        _copies[id(base)] = (base, base.search, own, len(own), base.user_dictionary, copy)
    return copy
