"""Two small ASGI helpers shared by the dashboard's HTTP layer (ui/server.py) and the upload budget
(ui/budget.py): a request header, and a plain-text refusal."""
from __future__ import annotations


def header(scope, name: bytes) -> str | None:
    """The first value of a header (``name`` in lower case) of an ASGI request, else ``None``."""
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == name), None)


async def refuse(scope, receive, send, status: int, text: str, headers: dict | None = None) -> None:
    """Answer with ``status`` and one line of text."""
    from starlette.responses import PlainTextResponse

    await PlainTextResponse(text + "\n", status_code=status, headers=headers)(scope, receive, send)
