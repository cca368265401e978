"""The search and ask pages over the store's index (``tidings.search.rank`` and ``tidings.search.ask``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..errors import TidingsError
from .deps import ConfigDep, StoreDep, page
from .views import marked

router = APIRouter()


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, store: StoreDep, config: ConfigDep, q: str = "") -> Response:
    from ..search.rank import search  # the index and its segmenter load on the first search

    query = q.strip()[:500]
    hits: list[tuple[Any, list[tuple[str, bool]]]] = []
    errors: dict[str, str] = {}
    mode = ""
    if query:
        try:
            result = search(store, query, config=config, limit=30)
            mode = result.mode
            hits = [(hit, marked(hit.snippet)) for hit in result.hits]
        except TidingsError as exc:  # SearchError: a query it cannot parse
            errors["q"] = str(exc)
    return page(request, "search.html", 422 if errors else 200, q=query, hits=hits, mode=mode, errors=errors)


@router.get("/ask", response_class=HTMLResponse)
def ask_page(request: Request, store: StoreDep, config: ConfigDep, q: str = "") -> Response:
    from ..search.ask import ask

    question = q.strip()[:1000]
    answer = None
    errors: dict[str, str] = {}
    if question:
        try:
            answer = ask(store, question, config=config)
        except TidingsError as exc:
            errors["q"] = str(exc)
    return page(request, "ask.html", 422 if errors else 200, q=question, answer=answer, errors=errors)
