"""Several curators on one web app (issue 15.4), on SQLite and PostgreSQL: named tokens made by
``tidings users``, every edit recorded with who made it, and a stale edit form refused (409) with
the fresh state shown, so two curators editing one week never lose each other's edits.

Everything goes through the real web app (FastAPI's TestClient over the real store) and the real
CLI; the week is a real digest of the shared corpus."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError
from weblib import WEEK

from tidings import collect, users
from tidings.config import Config
from tidings.store import CuratorAction, Digest, DigestEntryRow, Edit, Store, User, open_store
from tidings.web import create_app

OWNER_TOKEN = "correct-horse-battery-staple"


@pytest.fixture
def store(db_url: str, corpus_dir: Path) -> Iterator[Store]:
    """A store on each dialect holding one real sectioned week (2024-06-09)."""
    opened = open_store(db_url)
    report, _ = collect.import_paths(opened, [str(corpus_dir / "digests" / "blog" / WEEK / "index.md")],
                                     "digest", Config())
    assert report.failed == 0, report.failures
    yield opened
    opened.close()


def client_for(store: Store, token: str | None = None, *, owner_token: str | None = None,
               base_url: str = "http://127.0.0.1:8000") -> TestClient:
    """A browser of its own (its own cookies) on the app; ``token`` sent as a Bearer header."""
    app = create_app(store, Config(), token=owner_token)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return TestClient(app, base_url=base_url, headers=headers, raise_server_exceptions=False)


def csrf_of(client: TestClient) -> str:
    page = client.get(f"/week?week={WEEK}")
    assert page.status_code == 200, page.text[:300]
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert match is not None
    return match.group(1)


def edit_form_version(html: str, entry: int, action: str = "edit") -> str:
    """The hidden version field of an entry's form, as the page a curator loaded carries it."""
    match = re.search(rf'action="/entry/{entry}/{action}"[^>]*>\s*<input type="hidden" name="csrf" value="[^"]*">'
                      rf'\s*<input type="hidden" name="version" value="(\d+)">', html)
    assert match is not None, f"no version field in the {action} form of entry {entry}"
    return match.group(1)


def first_entry(store: Store, title_part: str) -> int:
    with store.session() as session:
        row = session.scalars(select(DigestEntryRow).join(Digest).where(
            Digest.week == date.fromisoformat(WEEK), DigestEntryRow.title_raw.like(f"%{title_part}%"))).first()
        assert row is not None
        return row.id


def post(client: TestClient, url: str, data: dict[str, str]) -> object:
    return client.post(url, data={"csrf": csrf_of(client), **data}, follow_redirects=False)


def edits_of(store: Store, entry: int) -> list[tuple[str, str | None, str | None]]:
    with store.session() as session:
        rows = session.scalars(select(Edit).where(Edit.entry_id == entry).order_by(Edit.id)).all()
        return [(row.field, row.new, row.by) for row in rows]


class _opened:
    """``with _opened(url) as store``: a store closed afterwards."""

    def __init__(self, url: str) -> None:
        self.store = open_store(url)

    def __enter__(self) -> Store:
        return self.store

    def __exit__(self, *_: object) -> None:
        self.store.close()


def test_users_add_list_remove_through_the_cli(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tidings.cli import run_cli

    assert run_cli(["users", "add", "alice"]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= 40 and "\n" not in token
    assert run_cli(["users", "add", "bob"]) == 0
    capsys.readouterr()
    with _opened(db_url) as store:
        with store.session() as session:
            hashes = dict(session.execute(select(User.name, User.token_hash)).all())
        # Only the hash is kept; the token itself is nowhere in the table.
        assert hashes["alice"] == hashlib.sha256(token.encode()).hexdigest()
        assert token not in hashes.values()
        assert users.user_for_token(store, token) == "alice"
    assert run_cli(["users", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["alice", "bob"]
    assert run_cli(["users", "add", "alice"]) == 2
    assert "already a user 'alice'" in capsys.readouterr().err
    assert run_cli(["users", "add", "owner"]) == 2
    assert "reserved" in capsys.readouterr().err
    assert run_cli(["users", "add", "no spaces/here"]) == 2
    assert "not a user name" in capsys.readouterr().err
    assert run_cli(["users", "remove", "carol"]) == 2
    assert "no user 'carol'" in capsys.readouterr().err
    assert run_cli(["users", "remove", "alice"]) == 0
    capsys.readouterr()
    assert run_cli(["users", "list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["bob"]
    with _opened(db_url) as store:
        assert users.user_for_token(store, token) is None


def test_two_curators_edits_are_attributed_and_a_stale_form_is_refused(store: Store) -> None:
    alice_token, bob_token = users.add_user(store, "alice"), users.add_user(store, "bob")
    alice, bob = client_for(store, alice_token), client_for(store, bob_token)
    entry = first_entry(store, "Qwen2")
    # Both load the week: their forms carry the same version of the entry.
    alice_page, bob_page = alice.get(f"/week?week={WEEK}").text, bob.get(f"/week?week={WEEK}").text
    version = edit_form_version(alice_page, entry)
    assert edit_form_version(bob_page, entry) == version
    assert edit_form_version(bob_page, entry, "keep") == version

    saved = post(alice, f"/entry/{entry}/edit", {"title": "Alice 的标题", "version": version})
    assert saved.status_code == 303  # type: ignore[attr-defined]

    # Bob's page is stale now: his summary edit is refused, not written over Alice's edit.
    refused = post(bob, f"/entry/{entry}/edit", {"title": "Bob 的标题", "summary": "Bob 的摘要。", "version": version})
    assert refused.status_code == 409  # type: ignore[attr-defined]
    html = refused.text  # type: ignore[attr-defined]
    message = re.search(r'data-field="stale" role="alert">([^<]*)<', html)
    assert message is not None and "Not saved" in message.group(1) and "alice" in message.group(1)
    assert "Alice 的标题" in html and "Bob 的标题" not in html  # the fresh state, not the stale form
    fresh = edit_form_version(html, entry)
    assert int(fresh) > int(version)
    # A stale keep/drop is refused as well, and nothing of it is recorded.
    assert post(bob, f"/entry/{entry}/keep", {"kept": "0", "version": version}).status_code == 409  # type: ignore[attr-defined]
    with store.session() as session:
        row = session.get(DigestEntryRow, entry)
        assert row is not None
        assert row.title_override == "Alice 的标题" and row.summary_override is None and row.kept

    # With the fresh page's version Bob's edit goes through, and each edit names its curator.
    assert post(bob, f"/entry/{entry}/edit", {"summary": "Bob 的摘要。", "version": fresh}).status_code == 303  # type: ignore[attr-defined]
    newer = edit_form_version(bob.get(f"/week?week={WEEK}").text, entry, "keep")
    assert post(bob, f"/entry/{entry}/keep", {"kept": "0", "version": newer}).status_code == 303  # type: ignore[attr-defined]
    assert edits_of(store, entry) == [("title", "Alice 的标题", "alice"), ("summary", "Bob 的摘要。", "bob"),
                                      ("kept", "False", "bob")]
    with store.session() as session:
        row = session.get(DigestEntryRow, entry)
        assert row is not None and row.title_override == "Alice 的标题" and row.summary_override == "Bob 的摘要。"
        assert not row.kept and row.item_id is not None
        item_id = row.item_id
        actions = session.execute(select(CuratorAction.action, CuratorAction.by)
                                  .where(CuratorAction.item_id == item_id)).all()
    assert [tuple(a) for a in actions] == [("drop", "bob")]
    # The item's history says who made each edit.
    history = alice.get(f"/item/{item_id}").text
    assert re.search(r"<strong>title</strong> <span class=\"by\">by alice</span>", history)
    assert re.search(r"<strong>summary</strong> <span class=\"by\">by bob</span>", history)


def test_login_form_cookie_and_a_removed_users_token_is_refused(store: Store) -> None:
    token = users.add_user(store, "carol")
    browser = client_for(store)  # no header: logs in as a person would, with the token form
    assert browser.get(f"/week?week={WEEK}").status_code == 401
    assert browser.get("/week?token=wrong-token-value").status_code == 401
    login = browser.get(f"/week?token={token}&week={WEEK}", follow_redirects=False)
    assert login.status_code == 303 and "token" not in login.headers["location"]
    page = browser.get(f"/week?week={WEEK}")
    assert page.status_code == 200  # the cookie carries the token now
    entry = first_entry(store, "Qwen2")
    version = edit_form_version(page.text, entry, "note")
    assert post(browser, f"/entry/{entry}/note", {"note": "卡罗尔的想法", "version": version}).status_code == 303  # type: ignore[attr-defined]
    assert edits_of(store, entry) == [("note", "卡罗尔的想法", "carol")]

    users.add_user(store, "dave")  # another curator keeps the app locked once carol is gone
    users.remove_user(store, "carol")
    for url in (f"/week?week={WEEK}", "/static/app.js", f"/item/{entry}"):
        assert browser.get(url).status_code == 401, url
    bearer = client_for(store, token)
    assert bearer.get(f"/week?week={WEEK}").status_code == 401


def test_the_single_token_setup_is_unchanged(store: Store) -> None:
    # A configured token, no named users: as before, on any host; edits are the owner's.
    public = client_for(store, owner_token=OWNER_TOKEN, base_url="http://192.0.2.10:8000")
    assert public.get(f"/week?week={WEEK}").status_code == 401
    owner = client_for(store, OWNER_TOKEN, owner_token=OWNER_TOKEN, base_url="http://192.0.2.10:8000")
    page = owner.get(f"/week?week={WEEK}")
    assert page.status_code == 200
    entry = first_entry(store, "Qwen2")
    version = edit_form_version(page.text, entry)
    assert post(owner, f"/entry/{entry}/edit", {"title": "店主的标题", "version": version}).status_code == 303  # type: ignore[attr-defined]
    # A form without a version (an older page, a script) is not refused.
    assert post(owner, f"/entry/{entry}/edit", {"summary": "店主的摘要。"}).status_code == 303  # type: ignore[attr-defined]
    assert [(f, by) for f, _, by in edits_of(store, entry)] == [("title", "owner"), ("summary", "owner")]

    # No token and no users: loopback only, no token asked, as before.
    local = client_for(store)
    assert local.get(f"/week?week={WEEK}").status_code == 200
    assert client_for(store, base_url="http://evil.example").get(f"/week?week={WEEK}").status_code == 421
    # Once a curator is named, the app asks every request for a token, loopback too; the
    # configured token keeps working beside the named ones.
    named = users.add_user(store, "dave")
    assert local.get(f"/week?week={WEEK}").status_code == 401
    assert client_for(store, named, base_url="http://192.0.2.10:8000").get(f"/week?week={WEEK}").status_code == 200
    both = client_for(store, OWNER_TOKEN, owner_token=OWNER_TOKEN)
    assert both.get(f"/week?week={WEEK}").status_code == 200


def test_an_edit_committed_between_read_and_write_is_not_overwritten(store: Store) -> None:
    """The version is checked by the UPDATE itself: two sessions that read the same entry and both
    edit it cannot both commit, whatever the forms said."""
    from tidings import curate

    entry = first_entry(store, "Qwen2")
    with store.session() as first:
        mine = first.get(DigestEntryRow, entry)
        assert mine is not None
        with store.session() as second:
            theirs = second.get(DigestEntryRow, entry)
            assert theirs is not None
            second.info[curate.EDITOR_KEY] = "bob"
            curate.edit_entry(second, theirs, title="Bob 先到")
        first.info[curate.EDITOR_KEY] = "alice"
        curate.edit_entry(first, mine, title="Alice 后到")
        with pytest.raises(StaleDataError):
            first.flush()
        first.rollback()
    with store.session() as session:
        row = session.get(DigestEntryRow, entry)
        assert row is not None and row.title_override == "Bob 先到"
    assert edits_of(store, entry) == [("title", "Bob 先到", "bob")]


def test_a_stale_digest_form_is_refused_and_the_fresh_digest_shown(store: Store) -> None:
    alice, bob = client_for(store, users.add_user(store, "alice")), client_for(store, users.add_user(store, "bob"))
    version_field = r'action="/digest/{week}/cover"[^>]*>\s*<input[^>]*>\s*<input type="hidden" name="version" value="(\d+)">'
    pattern = version_field.format(week=WEEK)
    alice_page, bob_page = alice.get(f"/digest/{WEEK}").text, bob.get(f"/digest/{WEEK}").text
    found = re.search(pattern, alice_page)
    assert found is not None and re.search(pattern, bob_page) is not None
    version = found.group(1)
    cover = {"image": "alice.png", "alt": "Alice 的封面", "label": "封面图", "caption": ""}
    assert post(alice, f"/digest/{WEEK}/cover", {**cover, "version": version}).status_code == 303  # type: ignore[attr-defined]
    refused = post(bob, f"/digest/{WEEK}/cover", {**cover, "image": "bob.png", "version": version})
    assert refused.status_code == 409  # type: ignore[attr-defined]
    assert "Not saved" in refused.text and 'value="alice.png"' in refused.text  # type: ignore[attr-defined]
    with store.session() as session:
        digest = session.scalar(select(Digest).where(Digest.week == date.fromisoformat(WEEK)))
        assert digest is not None and digest.cover_image == "alice.png"
        who = session.scalars(select(Edit.by).where(Edit.field == "cover")).all()
    assert who == ["alice"]
