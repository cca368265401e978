"""Colloquial words for technical terms, as people type them in questions (issue 16).

Each set lists equivalent surface forms, like ``query.SYNONYMS``; search adds them to the query's
synonym sets (:func:`with_colloquial`). They were written from the misses of the *calibration*
half of ``evals/natural.jsonl`` only (the held-out half never informed them), and each is general
vocabulary rather than a question's answer: a reader who asks about models "一本正经地胡说八道"
means hallucination, whatever the archive holds.
"""

from __future__ import annotations

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


_combined: dict[int, tuple[list[list[str]], int, list[list[str]]]] = {}


def with_colloquial(config: Config | None) -> Config:
    """``config`` with the colloquial sets added to its ``search.synonyms`` (a copy). The combined list
    is the same object for the same configured list (while it has as many sets), so the caches keyed
    by it (:func:`.query.synonyms_key`) are found again at every search."""
    base = config if config is not None else Config()
    own = base.search.synonyms
    known = _combined.get(id(own))
    if known is None or known[0] is not own or known[1] != len(own):
        if len(_combined) > 256:
            _combined.clear()
        known = _combined[id(own)] = (own, len(own), [*own, *COLLOQUIAL])
    search = base.search.model_copy(update={"synonyms": known[2]})
    return base.model_copy(update={"search": search})
