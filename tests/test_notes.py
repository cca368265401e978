"""Notes file parser: the real AiNotes file, synthetic cases it lacks, and robustness."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parserfuzz import check_result, never_raises_tests

from tidings.errors import ImportFormatError
from tidings.records import ItemRecord, ParseResult
from tidings.sources.notes import looks_like, parse_notes
from tidings.sources.social import stable_id


@pytest.fixture(scope="module")
def notes_path() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "notes" / "ainotes-part1.md"
    if not path.is_file():
        pytest.fail(f"shared corpus file missing: {path}")
    return path


@pytest.fixture(scope="module")
def notes(notes_path: Path) -> ParseResult:
    return parse_notes(notes_path.read_text(encoding="utf-8"), file=str(notes_path))


def titled(result: ParseResult, title: str) -> ItemRecord:
    return next(item for item in result.items if item.title == title)


# ------------------------------------------------------------------ the real file


def test_real_file_has_49_notes(notes: ParseResult) -> None:
    assert notes.errors == []
    assert len(notes.items) == 49
    assert notes.format == "notes"
    assert all(item.kind == "note" for item in notes.items)
    assert "AiNotes" not in [item.title for item in notes.items]
    assert notes.items[0].title == "LLM 限制输出长度思考" and notes.items[0].line == 7
    assert notes.items[-1].title == "AIGC 发展的一些难点" and notes.items[-1].line == 653
    assert all(item.extra["notebook"] == "AiNotes" for item in notes.items)
    assert notes.items[0].extra["notebook_description"] == "AI 的摘要与思考"
    assert len({item.url for item in notes.items}) == 49


def test_linked_notes_carry_their_url(notes: ParseResult) -> None:
    linked = [item for item in notes.items if not item.url.startswith("note:")]
    assert len(linked) == 12
    claude = titled(notes, "Writing a good CLAUDE.md")
    assert claude.url == "https://www.humanlayer.dev/blog/writing-a-good-claude-md"
    assert claude.line == 30
    assert claude.links == ["https://arxiv.org/pdf/2507.11538"]  # the body's own link, not the heading's
    assert titled(notes, "《Why Language Models Hallucinate》").url == "https://www.arxiv.org/pdf/2509.04664"
    # an empty body still makes a note: the link is the point
    ctm = titled(notes, "CTM（Continuous Thought Machine）")
    assert (ctm.url, ctm.text) == ("https://pub.sakana.ai/ctm/", "")


def test_unlinked_notes_get_title_ids(notes: ParseResult) -> None:
    note = titled(notes, "理解 Claude Agent Skills")
    assert note.url == stable_id("note", "理解 claude agent skills")
    assert note.guid == note.url
    assert all(item.guid and item.guid.startswith("note:") for item in notes.items)


def test_level_two_headings_stay_in_their_note(notes: ParseResult) -> None:
    note = titled(notes, "LLM 可解释性")
    assert "## [人格向量](https://www.anthropic.com/research/persona-vectors)" in note.text
    assert note.links == [
        "https://www.anthropic.com/research/persona-vectors",
        "https://www.anthropic.com/research/mapping-mind-language-model",
    ]


def test_code_fences_and_separators(notes: ParseResult) -> None:
    lora = titled(notes, "LoRA(low-rank-adapter) and ControlNet")
    assert "ΔW = B @ A    # A 是低秩（r×d），B 是（d×r），r 远小于 d" in lora.text
    first = notes.items[0]
    assert first.text.startswith("**核心问题**")
    assert not first.text.endswith("---")  # the separator before the next note is not content


def test_personal_notes(notes: ParseResult) -> None:
    poison = titled(notes, "少量样本可毒害任何规模的LLM")
    assert poison.url == "https://www.anthropic.com/research/small-samples-poison"
    assert (
        poison.note
        == '即使是0.00016%的脏数据也可能造成严重影响，AI安全不能简单依赖数据规模，需要"零容忍"的精细化防御。'
    )
    assert poison.extra["note_labels"] == ["个人思考"]
    assert "个人思考：即使是" in poison.text  # the body keeps it too

    # "思考：" runs on over the following "方案：" paragraph, to the end of the note
    agent = titled(notes, "Building Efficient Agent")
    assert agent.note is not None
    assert agent.note.startswith("外化的工具链调用过程中需要调用大模型推理怎么办？\n\n方案：")
    assert agent.extra["note_labels"] == ["思考"]

    discomfort = titled(notes, "不适感让你变强大")
    assert (
        discomfort.note
        == "使用 AI 做启发性的事情，自己得出结果，再让 AI Review；\n\n经常思考困难的问题，让思想经受考验，你才能学会思考。"
    )

    # a note titled 个人思考 is own voice throughout
    prompt = titled(notes, "Prompt 工程个人思考")
    assert prompt.note == prompt.text and prompt.note.startswith("> **熵减原则**")

    assert sum(1 for item in notes.items if item.note) == 5
    assert titled(notes, "MoE").note is None


def test_real_file_has_no_dates(notes: ParseResult) -> None:
    assert all(item.published_at is None for item in notes.items)


def test_reparse_is_identical(notes_path: Path, notes: ParseResult) -> None:
    assert parse_notes(notes_path.read_text(encoding="utf-8"), file=str(notes_path)).items == notes.items


def test_looks_like(notes_path: Path, corpus_dir: Path) -> None:
    ok, why = looks_like(notes_path.read_text(encoding="utf-8"))
    assert ok and "50" in why
    social = (corpus_dir / "social" / "posts-2023-12-part1.md").read_text(encoding="utf-8")
    assert looks_like(social)[0] is False
    assert looks_like("---\ntitle: x\n---\n# a\n# b\n")[0] is False


# ------------------------------------------------------------------ synthetic cases


def test_hash_inside_code_fence_is_not_a_heading() -> None:
    # synthetic fixture: the real file lacks this case
    text = "# Note A\n\n```python\n# a comment, not a note\nx = 1\n```\n\n~~~\n# also code\n~~~\n# Note B\nbody\n"
    result = parse_notes(text)
    assert [item.title for item in result.items] == ["Note A", "Note B"]
    assert "# a comment, not a note" in result.items[0].text
    assert "# also code" in result.items[0].text


def test_bare_date_lines_date_the_notes_below() -> None:
    # synthetic fixture: the real file lacks this case
    text = (
        "# AiNotes\nAI 的摘要与思考\n\n---\n\n"
        "2025-04-27\n\n# Newest\nbody\n\n# Same day\nbody\n2025-04-20\n\n# Older\n\n"
        "# Dated under its heading\n2025/4/1\nbody\n\n## 2025年3月2日\n\n# Heading date\n"
    )
    result = parse_notes(text)
    assert result.errors == []
    got = {item.title: item.published_at for item in result.items}
    assert got == {
        "Newest": datetime(2025, 4, 27),
        "Same day": datetime(2025, 4, 27),
        "Older": datetime(2025, 4, 20),
        "Dated under its heading": datetime(2025, 4, 1),
        "Heading date": datetime(2025, 3, 2),
    }
    same_day = next(item for item in result.items if item.title == "Same day")
    assert same_day.text == "body"  # the date line is a separator, not content


def test_date_inside_code_is_content() -> None:
    # synthetic fixture: the real file lacks this case
    [note] = parse_notes("# Log\n```\n2025-01-01\n```\n").items
    assert note.published_at is None and "2025-01-01" in note.text


def test_question_label() -> None:
    # synthetic fixture: the real file lacks this case
    text = (
        "# Note\n\n要点一\n\n疑问：为什么会这样？\n\n还有一个相关的问题。\n\n**结论**：这不是疑问的一部分\n\n"
        "# Other\n\n**疑问**：加粗的标签\n## 下一节\n不属于疑问\n\n"
        "# Third\n\n**个人思考：**冒号在粗体里\n\n---\n\n后面不算\n"
    )
    result = parse_notes(text)
    notes = {item.title: item for item in result.items}
    assert notes["Note"].note == "为什么会这样？\n\n还有一个相关的问题。"
    assert notes["Note"].extra["note_labels"] == ["疑问"]
    assert notes["Other"].note == "加粗的标签"
    assert notes["Third"].note == "冒号在粗体里"
    assert "要点一" in notes["Note"].text and "疑问：为什么会这样？" in notes["Note"].text


def test_several_labelled_parts_join() -> None:
    # synthetic fixture: the real file lacks this case
    [note] = parse_notes("# N\n思考：一\n\n正文\n\n## 小节\n\n疑问：二\n").items
    assert note.note == "一\n\n正文\n\n二"
    assert note.extra["note_labels"] == ["思考", "疑问"]


def test_ids_are_stable_under_body_edits() -> None:
    a = parse_notes("# Title\nbody one\n").items[0]
    b = parse_notes("# Title\nbody two, edited later\n").items[0]
    assert a.url == b.url
    twice = parse_notes("# Title\none\n# Title\ntwo\n").items
    assert twice[0].url == a.url and twice[1].url != a.url


def test_text_outside_any_note_is_reported() -> None:
    result = parse_notes("stray line\n\n# Note\nbody\n", file="n.md")
    assert [item.title for item in result.items] == ["Note"]
    [error] = result.errors
    assert isinstance(error, ImportFormatError) and (error.file, error.line) == ("n.md", 1)


def test_first_heading_is_a_note_unless_it_looks_like_a_file_title() -> None:
    long_first = "# First note\n\n- a\n- b\n- c\n\n# Second\nx\n"
    assert [item.title for item in parse_notes(long_first).items] == ["First note", "Second"]
    linked = "# [First](https://a.example)\n---\n# Second\nx\n"
    assert [item.title for item in parse_notes(linked).items] == ["First", "Second"]
    single = "# 读书笔记\n"
    assert [item.title for item in parse_notes(single).items] == ["读书笔记"]


def test_empty_heading_borrows_the_first_body_line() -> None:
    result = parse_notes("# A\nx\n#\n\n**Unnamed** thought\n#\n")
    assert [item.title for item in result.items] == ["A", "Unnamed thought"]
    assert len(result.errors) == 1 and "no title" in result.errors[0].reason


def test_crlf() -> None:
    [note] = parse_notes("# T\r\n个人思考：x\r\n").items
    assert (note.title, note.note, note.text) == ("T", "x", "个人思考：x")


# ------------------------------------------------------------------ robustness


def _check(result: ParseResult) -> None:
    check_result(result, "note")


_LINES = st.sampled_from(
    [
        "# AiNotes",
        "# Title",
        "# [Linked](https://a.example/x)",
        "#",
        "## Sub",
        "```",
        "~~~~",
        "# comment",
        "2025-04-27",
        "**2025-04-27**",
        "2025-13-40",
        "---",
        "个人思考：x",
        "**疑问**",
        "思考：",
        "**label**：",
        "",
        "text",
    ]
)


test_random_text_never_raises, test_structured_noise_never_raises = never_raises_tests(
    lambda text, file: parse_notes(text, file=file), looks_like, _check, _LINES
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_truncated_real_file_never_raises(notes_path: Path, data: st.DataObject) -> None:
    text = notes_path.read_text(encoding="utf-8")
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    result = parse_notes(text[:cut], file="t.md")
    _check(result)
    assert len(result.items) <= 49
