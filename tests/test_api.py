"""The public library API (``tidings/__init__.py``): every documented name exists and is callable,
every function shows an example, ``import tidings`` stays lazy, and a week can be made through the
API alone: open a store, add a saved page, run the stages, render the week."""

from __future__ import annotations

import inspect
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

import tidings

PAGES = Path(__file__).resolve().parents[1] / "examples" / "pages"


def public_functions() -> list[str]:
    return [name for name in tidings.__all__ if inspect.isfunction(getattr(tidings, name))]


def test_every_documented_name_exists_and_is_callable() -> None:
    assert len(set(tidings.__all__)) == len(tidings.__all__)
    for name in tidings.__all__:
        assert callable(getattr(tidings, name)), name
        assert name in dir(tidings), name
    assert public_functions(), "the API has functions, not only types"


@pytest.mark.parametrize("name", public_functions())
def test_every_function_has_a_docstring_with_an_example_of_itself(name: str) -> None:
    doc = inspect.getdoc(getattr(tidings, name))
    assert doc, name
    summary, _, example = doc.partition("Example::")
    assert summary.strip(), f"{name}: say what it does before the example"
    assert re.search(rf"\btidings\.{name}\(", example), f"{name}: the example must call tidings.{name}(...)"


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError):
        _ = tidings.no_such_name  # type: ignore[attr-defined]


def test_a_submodule_import_does_not_shadow_a_public_function() -> None:
    import tidings.search  # noqa: F401  (the module of the same name must not replace the function)

    assert inspect.isfunction(tidings.search_archive)
    for name in public_functions():
        assert inspect.isfunction(getattr(tidings, name)), name


def test_a_week_through_the_public_api_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./tidings.toml: the built-in defaults
    config = tidings.load_config()
    store = tidings.open_store(tmp_path / "api.db")
    try:
        added = tidings.add_urls(store, [str(PAGES / "go-iterators.html")])
        assert (added.new, added.failed) == (1, 0)

        reports = tidings.run(store, config, policy=tidings.FetchPolicy(allow_files=True))
        assert [r.stage for r in reports] == ["fetch", "dedupe", "stories", "summarize", "classify"]
        assert all(isinstance(r, tidings.StageReport) and r.failed == 0 for r in reports), reports

        # The item was seen today: its week ends on the coming week end (Sunday by default).
        today = date.today()
        week = today + timedelta(days=(6 - today.weekday()) % 7)
        preview = tidings.render_week(store, week, config)
        assert preview is not None and "迭代器" in preview
        doc = tidings.preview_week(store, week, config)
        assert isinstance(doc, tidings.DigestDoc) and len(doc.entries) == 1
        saved = tidings.render_week(store, week, config, save=True)
        assert saved == preview  # the draft it saves is the one the preview showed

        result = tidings.search_archive(store, "迭代器", config=config, hybrid=False)
        assert [hit.item.url for hit in result.hits] == [(PAGES / "go-iterators.html").resolve().as_uri()]
    finally:
        store.close()
