"""Capture: a page the reader's browser rendered, stored as if tidings had fetched it.

Fetching fails where many articles live (a WeChat "link expired" wall, pages built by JavaScript,
sites that block bots), but the reader has the page open. The browser sends its rendered HTML
(the bookmarklet of ``tidings serve``, see ``web/capture.py``); this module stores it under the
page's URL, which is the item's identity as for every other door (a later feed entry or
``tidings add`` of that URL is the same item), and extracts it with the fetch stage's own worker
function and commit. A captured item is extracted, so no later fetch selects it again: a failing
fetch of the same URL cannot overwrite it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .curate import set_item_note
from .errors import TidingsError
from .pipeline import ingest, record_failure, store_extraction
from .records import ItemRecord
from .store import SET_ASIDE, Item, ItemStatus, Store, utcnow

if TYPE_CHECKING:
    from .stages.work import Extraction

SOURCE_KIND = "capture"
SOURCE_LOCATOR = "browser capture"
CONTENT_TYPE = "text/html; charset=utf-8"  # the browser sends the DOM as text; the form encodes it in UTF-8
MAX_URL = 8192  # characters: longer than any real page address, short enough to refuse junk


class CaptureError(TidingsError):
    """A capture that was refused before anything was stored; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Captured:
    """What one capture did to the store, for the answer page."""

    item_id: int
    title: str | None
    status: str
    state: str
    """``new`` (no item had this URL), else ``updated`` / ``unchanged`` as for any ingest."""
    error_reason: str | None = None
    """Why the captured page holds no article (``no_article`` …), when it holds none."""
    kept_earlier: bool = False
    """The capture held no article and the item's earlier text was kept."""
    error: str | None = None
    """The extractor's message when the page holds no article."""
    note: str | None = None
    """The item's note after the capture (the selection joins it)."""


def check_page_url(url: str) -> str:
    """``url`` stripped, when it is an http(s) URL with a host; CaptureError otherwise. Nothing is
    fetched from it, so private addresses do not matter here: the identity must only be a URL."""
    value = url.strip()
    if not value:
        raise CaptureError("bad_url", "the page's URL is missing")
    if len(value) > MAX_URL:
        raise CaptureError("bad_url", f"the page's URL is longer than {MAX_URL} characters")
    if any(ord(char) < 33 or ord(char) == 127 for char in value):
        raise CaptureError("bad_url", "the page's URL holds spaces or control characters")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise CaptureError("bad_url", f"malformed URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise CaptureError("bad_url", f"only http and https pages are captured, not {parts.scheme or 'this'}:")
    if not parts.hostname:
        raise CaptureError("bad_url", "the page's URL has no host")
    return value


def capture_page(store: Store, *, url: str, html: bytes, selection: str = "", max_bytes: int) -> Captured:
    """Store the rendered page ``html`` of ``url`` and extract it; ``selection`` (the text the
    reader had selected) joins the item's note.

    ``max_bytes`` is the fetcher's body cap (``fetch.max_bytes``): a captured page is as untrusted
    as a fetched one. A capture whose page holds no article never replaces text the item already
    has, and the page's raw bytes stay what was extracted."""
    page_url = check_page_url(url)
    if len(html) > max_bytes:
        raise CaptureError("too_large", f"the page is {len(html)} bytes, more than the {max_bytes} allowed "
                                        "(fetch.max_bytes); nothing was saved")
    if not html.strip():
        raise CaptureError("empty", "no page content was sent; nothing was saved")
    from .stages.work import extract_page  # trafilatura is heavy: loaded only when a page comes in

    # Extracted before anything is stored, in this process: the fetch stage's own function, so a
    # captured page and a fetched one give the same text and title.
    found = extract_page(html, CONTENT_TYPE, page_url)
    record = ItemRecord(url=page_url, extra={"captured": True})
    report = ingest(store, [record], source_kind=SOURCE_KIND, locator=SOURCE_LOCATOR)
    item_id = report.item_ids[0]
    state = "new" if report.new else ("updated" if report.updated else "unchanged")
    with store.session() as session:
        item = session.get(Item, item_id)
        assert item is not None  # ingest just stored or found it
        kept_earlier = found.error_reason is not None and item.status == ItemStatus.EXTRACTED
        if not kept_earlier:
            _commit_capture(item, html, found)
        item.extra = {**(item.extra or {}), "captured": True, "captured_at": utcnow().isoformat(timespec="seconds")}
        quote = selection.strip()
        if quote and quote not in (item.note or ""):
            set_item_note(session, item, f"{item.note}\n\n{quote}" if item.note else quote)
        return Captured(item_id=item.id, title=item.title, status=str(item.status), state=state,
                        error_reason=found.error_reason, kept_earlier=kept_earlier, error=found.error,
                        note=item.note)


def _commit_capture(item: Item, html: bytes, found: Extraction) -> None:
    """The captured page and its extraction on ``item``, as the fetch stage commits a fetched one."""
    if item.status in SET_ASIDE:
        # The title came from the page that failed (a "link expired" wall, an error page), never
        # from the curator (their titles are digest-entry overrides): the captured page names it.
        item.title = None
        item.extra = {k: v for k, v in (item.extra or {}).items() if k != "title_derived"}
    item.raw = html
    item.raw_content_type = CONTENT_TYPE
    if found.error_reason is None:
        store_extraction(item, found)
        return
    record_failure(item, found.error_reason, f"{item.url}: {found.error or found.error_reason}", transient=False)
    item.status = ItemStatus.REJECTED
    if not item.title and found.title:
        item.title = found.title
