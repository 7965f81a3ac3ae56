"""The solver's freed memory goes back to the system: a week-long run must not grow solve by solve."""

from __future__ import annotations

import json
import os
import platform
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optimizer as opt
from optimizer.memory import release_freed_memory

BLOCK_BYTES = 64 * 1024  # below glibc's mmap threshold: served from the heap, like most of a solve's memory
BLOCKS = 1024  # 64 MiB in all
CASES = sorted((Path(__file__).parent / "cases").glob("[0-9][0-9][0-9]-*.json"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_gridctl_runs_on_glibc_where_freed_memory_can_be_released() -> None:
    assert platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert release_freed_memory() is True


def test_free_pages_between_survivors_go_back_to_the_system() -> None:
    measured: dict[str, int] = {}

    def churn() -> None:
        blocks, survivors = [], []
        for i in range(BLOCKS):
            block = b"\x01" * BLOCK_BYTES
            # Every 16th block outlives the others, as the few objects that outlive a solve do: the free
            # space between them cannot go back to the system by shrinking the heap at its top.
            (survivors if i % 16 == 15 else blocks).append(block)
        blocks.clear()
        measured["freed"] = _rss_bytes()
        release_freed_memory()
        measured["released"] = _rss_bytes()
        survivors.clear()

    # A worker thread, as the controller runs the solver: its allocations come from an arena of its own.
    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    assert measured["freed"] - measured["released"] >= BLOCKS * BLOCK_BYTES // 2


def test_repeated_solves_in_a_worker_thread_do_not_grow_the_process() -> None:
    problems = [opt.Problem.model_validate(json.loads(path.read_text())["problem"]) for path in CASES]
    sizes = []

    def solve_all() -> None:
        for problem in problems:
            assert opt.solve(problem, opt.Settings(time_limit_s=10.0)).has_solution

    with ThreadPoolExecutor(1) as pool:
        for _ in range(12):
            pool.submit(solve_all).result()
            sizes.append(_rss_bytes())
    # The same problems need the same memory: once warmed up, the process stays where it was.
    assert max(sizes[4:]) - sizes[3] < 2 * 2**20
