"""asyncio where the service needs more than it gives: work in threads a stop does not wait for, tasks
that stop even when a library drops their cancellation, and an exit that a running solve cannot abort.

A solve or a model refit takes seconds and its result is worthless once the service stops. Run on
asyncio's default executor, every one still under way would hold the process at exit (the executor
joins its threads); a daemon thread does not. Python 3.11's `asyncio.wait_for`, inside pymodbus among
others, drops a cancellation that arrives together with its answer, so one cancel is not always enough.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

log = logging.getLogger(__name__)
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


async def stop_task(task: asyncio.Task[Any] | None, timeout_s: float = 10.0) -> bool:
    """Cancel `task` (again every half second, should a library drop the cancellation) and wait for it to
    end, at most `timeout_s`. True when it ended; its exception, if any, is logged, not raised."""
    if task is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            log.warning("task %s did not stop within %.0f s", task.get_name(), timeout_s)
            return False
        await asyncio.wait([task], timeout=min(left, 0.5))
    if not task.cancelled() and task.exception() is not None:
        log.warning("task %s ended with %r", task.get_name(), task.exception())
    return True


def exit_now(code: int) -> NoReturn:
    """Leave the process once the service has stopped, skipping the interpreter's finalisation: a solve
    still running in a daemon thread would otherwise abort the process in the solver's C++ runtime."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
