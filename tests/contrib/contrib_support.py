"""Helpers for the integration tests: Django cache settings, and an ASGI app run as a server would.

Kept out of conftest.py so test modules can import them by a name no other conftest shares.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET_KEY = "kirocache-tests-not-a-real-secret-" + "x" * 20

Message = dict[str, Any]
ASGIApp = Callable[..., Any]


def django_cache(location: str, **params: Any) -> dict[str, Any]:
    """One ``CACHES`` alias on the kirocache backend, with a key prefix of its own."""
    options = params.pop("OPTIONS", {})
    options.setdefault("key_prefix", f"djt{uuid.uuid4().hex[:10]}:")
    return {
        "BACKEND": "kirocache.contrib.django.KirocacheCache",
        "LOCATION": location,
        "OPTIONS": options,
        **params,
    }


def custom_key_func(key: str, key_prefix: str, version: int) -> str:
    """Django's own test key function."""
    return "CUSTOM-" + "-".join([key_prefix, str(version), key])


class StartupFailed(Exception):
    """The app answered ``lifespan.startup.failed``; the message is the app's."""


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan as an ASGI server does, and yield a client talking to it.

    The lifespan state the app sets at start-up is copied into every request's scope, as
    uvicorn does; shutdown runs when the block ends.

    Raises:
        StartupFailed: The app failed to start (the exception it raised is the cause).
    """
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await _answer(task, outbox)
    if started["type"] == "lifespan.startup.failed":
        error = task.exception() if task.done() else None
        raise StartupFailed(started.get("message", "")) from error

    async def with_state(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    transport = httpx.ASGITransport(app=with_state)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        stopped = await _answer(task, outbox)
        assert stopped["type"] == "lifespan.shutdown.complete", stopped
        await task


async def _answer(task: asyncio.Task[Any], outbox: asyncio.Queue[Message]) -> Message:
    """The app's next lifespan message, or what it raised (Starlette sends and re-raises)."""
    getter = asyncio.ensure_future(outbox.get())
    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    task.result()  # raises what the app raised
    msg = "the app's lifespan ended without answering"
    raise AssertionError(msg)
