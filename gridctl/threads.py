"""Long computations beside the event loop, in threads that a stopping service does not wait for.

A solve or a model refit takes seconds and its result is worthless once the service stops. Run on
asyncio's default executor, every one still under way would hold the process at exit (the executor
joins its threads); a daemon thread does not.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def in_daemon_thread(fn: Callable[..., T], *args: Any, name: str = "gridctl worker") -> T:
    """`fn(*args)` in a daemon thread; its result or exception comes back to the awaiting task."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # the awaiting task was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop closed while this ran: nobody waits for the result any more

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future
