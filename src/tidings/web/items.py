"""One item's page: its text, where it came from, the digests it appeared in, and its history."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from .. import curate
from ..htmltext import safe_href, text_html
from .deps import RowId, StoreDep, page

router = APIRouter()


@router.get("/item/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, item_id: RowId, store: StoreDep) -> Response:
    with store.session() as session:
        found = curate.item_history(session, item_id)
        if found is None:
            raise HTTPException(404, f"There is no item {item_id}.")
        # The page shows the item as ``Item.view()`` has it, like ``items --json`` and the week view.
        item = found.item.view()
        duplicates = [dup.view(with_text=False) for dup in found.duplicates]
        return page(
            request, "item.html", item=item, sources=found.sources, appearances=found.appearances,
            history=found.edits, corrections=found.corrections, duplicates=duplicates,
            text_html=text_html(item.text or ""), href=safe_href(item.link),
        )
