"""One item's page: its text, where it came from, the digests it appeared in, and its history."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from .. import curate, pipeline
from ..htmltext import safe_href, text_html
from .deps import RowId, StoreDep, page

router = APIRouter()


@router.get("/item/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, item_id: RowId, store: StoreDep) -> Response:
    with store.session() as session:
        found = curate.item_history(session, item_id)
        if found is None:
            raise HTTPException(404, f"There is no item {item_id}.")
        item = found.item
        # Rendered inside the session: the page reads the item's URLs and each duplicate's, which
        # load when read.
        return page(
            request, "item.html", item=item, urls=[u.url for u in item.urls], sources=found.sources,
            appearances=found.appearances, history=found.edits, corrections=found.corrections,
            duplicates=found.duplicates, text_html=text_html(item.text or ""),
            href=safe_href(pipeline.fetch_url_of(item)),
        )
