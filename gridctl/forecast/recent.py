"""Samples kept by age: what a forecast learns from is the last days, whatever the rate they came at."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import datetime, timedelta


class Recent:
    """(instant, value) samples in time order, dropped once older than `keep` before the newest."""

    def __init__(self, keep: timedelta) -> None:
        self.keep = keep
        self._samples: deque[tuple[datetime, float]] = deque()

    def add(self, moment: datetime, value: float) -> None:
        """Keep a sample newer than the last (an older or repeated one is ignored)."""
        if self._samples and moment <= self._samples[-1][0]:
            return
        self._samples.append((moment, value))
        while moment - self._samples[0][0] > self.keep:
            self._samples.popleft()

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[tuple[datetime, float]]:
        return iter(self._samples)

    def last(self) -> tuple[datetime, float] | None:
        return self._samples[-1] if self._samples else None

    def span(self) -> timedelta:
        """How far back the samples reach."""
        return self._samples[-1][0] - self._samples[0][0] if self._samples else timedelta(0)
