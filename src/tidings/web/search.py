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
def search_page(request: Request, store: StoreDep, config: ConfigDep, q: str | None = None) -> Response:
    from ..search.query import EmptyQuery
    from ..search.rank import search  # the index and its segmenter load on the first search

    query = (q or "").strip()[:500]
    hits: list[tuple[Any, list[tuple[str, bool]]]] = []
    errors: dict[str, str] = {}
    mode = ""
    status = 200
    if q is not None:  # no q at all is the empty form; a submitted blank q is a mistake to point out
        try:
            result = search(store, query, config=config, limit=30)
            mode = result.mode
            hits = [(hit, marked(hit.snippet)) for hit in result.hits]
        except EmptyQuery as exc:
            errors["q"], status = str(exc), 400
        except TidingsError as exc:  # SearchError: a query it cannot parse
            errors["q"], status = str(exc), 422
    return page(request, "search.html", status, q=query, hits=hits, mode=mode, errors=errors)


@router.get("/ask", response_class=HTMLResponse)
def ask_page(request: Request, store: StoreDep, config: ConfigDep, q: str | None = None) -> Response:
    from ..search.ask import ask
    from ..search.query import EmptyQuery

    question = (q or "").strip()[:1000]
    answer = None
    errors: dict[str, str] = {}
    status = 200
    if q is not None:
        try:
            answer = ask(store, question, config=config)
        except EmptyQuery as exc:
            errors["q"], status = str(exc), 400
        except TidingsError as exc:
            errors["q"], status = str(exc), 422
    return page(request, "ask.html", status, q=question, answer=answer, errors=errors)
