"""Every item of a paged `List*` call, page after page."""

from typing import Callable, Iterator, Optional


def pages(method: Callable, request, items: str, page_size: int = 100,
          timeout: Optional[float] = 30.0) -> Iterator:
    """Yields each element of the response field `items` (e.g.
    "executions"), following `next_page_token` until it is empty. The
    request is copied, not changed."""
    from .errors import call

    req = type(request)()
    req.CopyFrom(request)
    req.page_size = page_size
    while True:
        resp = call(method, req, timeout=timeout)
        yield from getattr(resp, items)
        if not resp.next_page_token:
            return
        req.page_token = resp.next_page_token
