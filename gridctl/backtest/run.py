"""Run a backtest: the chosen controllers over one period, side by side (in parallel processes when the
machine has the cores), with a progress bar, and their KPIs."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from gridctl.backtest.kpis import Kpis, kpis, share_of_oracle_saving
from gridctl.backtest.plant import REPLAYED
from gridctl.backtest.recording import PRICE, Recording
from gridctl.backtest.replay import CONTROLLERS, BacktestSettings, Controller, Replay, policy_for, replay
from gridctl.config import models as m


class BacktestError(ValueError):
    """The backtest cannot run as asked (period, site, data); the message says why."""


@dataclass
class BacktestResult:
    site_id: str
    start: datetime
    end: datetime
    settings: BacktestSettings
    currency: str
    replays: dict[str, Replay]
    kpis: dict[str, Kpis]
    wall_s: float
    left_out: list[str] = field(default_factory=list)

    @property
    def share_of_oracle_saving(self) -> float | None:
        return share_of_oracle_saving({name: k.period for name, k in self.kpis.items()})

    def as_dict(self) -> dict[str, Any]:
        controllers: dict[str, Any] = {}
        for name, result in self.kpis.items():
            replayed = self.replays[name]
            entry: dict[str, Any] = {key: round(value, 4) for key, value in result.period.items()}
            entry["wall_s"] = round(replayed.wall_s, 2)
            entry["cpu_s"] = round(replayed.cpu_s, 2)
            if name == "gridctl":
                entry["plans"] = replayed.plans
                entry["plan_failures"] = replayed.plan_failures
            if replayed.oracle is not None:
                entry["oracle"] = replayed.oracle
            controllers[name] = entry
        share = self.share_of_oracle_saving
        return {
            "site": self.site_id, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "step_min": self.settings_step_min, "currency": self.currency, "controllers": controllers,
            "share_of_oracle_saving": None if share is None else round(share, 4),
            "not_replayed": self.left_out, "wall_s": round(self.wall_s, 2),
        }

    @property
    def settings_step_min(self) -> float:
        replayed = next(iter(self.replays.values()))
        index = replayed.trace.index
        return (index[1] - index[0]).total_seconds() / 60.0 if len(index) > 1 else 0.0


def replayable_site(site: m.Site) -> tuple[m.Site, list[str]]:
    """The site with the assets a backtest can replay; the others (which need a building model) stay in the
    recorded load as they were."""
    kept = [a for a in site.assets if a.type in REPLAYED]
    left = [f"{a.id} ({a.type})" for a in site.assets if a.type not in REPLAYED]
    return site.model_copy(update={"assets": kept}), left


def check_period(site: m.Site, recording: Recording, settings: BacktestSettings, controllers: list[str]) -> None:
    if settings.end <= settings.start:
        raise BacktestError("the period ends before it starts")
    if settings.start < recording.start or settings.end > recording.end:
        raise BacktestError(f"the period {settings.start:%Y-%m-%d %H:%M} to {settings.end:%Y-%m-%d %H:%M} UTC is not "
                            f"inside the data ({recording.start:%Y-%m-%d %H:%M} to {recording.end:%Y-%m-%d %H:%M} UTC)")
    for moment in (settings.start, settings.end):
        if (moment - recording.start) % recording.step:
            raise BacktestError(f"{moment.isoformat()} is not on a step of the data (every "
                                f"{recording.step.total_seconds() / 60:g} min from {recording.start.isoformat()})")
    if site.tariff.kind == "spot" and not recording.has(PRICE):
        raise BacktestError(f"site {site.id} buys at spot prices: the data needs a price column ('price [EUR/MWh]')")
    if "gridctl" in controllers and "power" not in site.grid.points:
        raise BacktestError(f"site {site.id} has no grid meter power point (grid.points.power): gridctl learns the "
                            "load from it")


class ProgressBar:
    """One line on stderr: each controller's share of the steps done."""

    def __init__(self, total: int, names: list[str], stream: IO[str] | None) -> None:
        self.total, self.names, self.stream = max(total, 1), names, stream
        self.done = dict.fromkeys(names, 0)
        self.began = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, name: str, done: int) -> None:
        self.done[name] = done
        now = time.perf_counter()
        if now - self._last_draw >= 0.25 or done >= self.total:
            self.draw()
            self._last_draw = now

    def draw(self, final: bool = False) -> None:
        if self.stream is None:
            return
        share = min(self.done.values()) / self.total
        parts = " · ".join(f"{n} {100 * self.done[n] / self.total:3.0f}%" for n in self.names)
        elapsed = time.perf_counter() - self.began
        width = 24
        filled = int(width * share)
        bar = "█" * filled + "░" * (width - filled)
        line = f"backtest {bar} {parts} · {elapsed:5.0f} s"
        if self.stream.isatty():
            self.stream.write("\r" + line + ("\n" if final else ""))
        elif final or int(share * 10) > self._last_decile:
            self._last_decile = int(share * 10)
            self.stream.write(line + "\n")
        self.stream.flush()


def run_backtest(site: m.Site, recording: Recording, settings: BacktestSettings,
                 controllers: list[str] | None = None, workers: int | None = None,
                 progress: IO[str] | None = sys.stderr) -> BacktestResult:
    """Replay each controller over the period, in up to `workers` processes (default: one per core)."""
    began = time.perf_counter()
    names = [c for c in CONTROLLERS if c in (controllers or CONTROLLERS)]
    site, left_out = replayable_site(site)
    check_period(site, recording, settings, names)
    total = recording.position(settings.end) - recording.position(settings.start)
    bar = ProgressBar(total, names, progress)
    workers = max(1, min(workers or os.cpu_count() or 1, len(names)))
    replays: dict[str, Replay] = {}
    if workers == 1:
        for name in names:
            replays[name] = asyncio.run(replay(site, recording, settings, name,  # type: ignore[arg-type]
                                               lambda done, n=name: bar.update(n, done)))
    else:
        replays = _in_processes(site, recording, settings, names, workers, bar)
    bar.draw(final=True)
    policy = policy_for(site, recording, settings)
    results = {name: kpis(replays[name], site, recording, policy, settings.start, settings.end) for name in names}
    return BacktestResult(site.id, settings.start, settings.end, settings, recording.currency, replays, results,
                          time.perf_counter() - began, left_out)


def _worker(site: m.Site, recording: Recording, settings: BacktestSettings, name: Controller,
            counter: Any, results: Any) -> None:
    def tick(done: int) -> None:
        counter.value = done

    try:
        results.put((name, asyncio.run(replay(site, recording, settings, name, tick)), None))
    except Exception as error:  # reported by the parent, which owns the terminal
        results.put((name, None, f"{type(error).__name__}: {error}"))


def _in_processes(site: m.Site, recording: Recording, settings: BacktestSettings, names: list[str], workers: int,
                  bar: ProgressBar) -> dict[str, Replay]:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    counters = {name: context.Value("i", 0) for name in names}
    pending = list(names)
    running: dict[str, Any] = {}
    replays: dict[str, Replay] = {}
    errors: list[str] = []
    # The longest first: gridctl plans every step, the oracle solves once, the baseline only follows rules.
    pending.sort(key=lambda n: {"gridctl": 0, "oracle": 1, "baseline": 2}[n])
    try:
        while pending or running:
            while pending and len(running) < workers:
                name = pending.pop(0)
                process = context.Process(target=_worker, args=(site, recording, settings, name, counters[name],
                                                                  results), daemon=True)
                process.start()
                running[name] = process
            try:
                name, replayed, error = results.get(timeout=0.25)
            except Exception:  # queue.Empty: nobody finished yet
                for name in names:
                    bar.update(name, counters[name].value)
                for name, process in list(running.items()):
                    if not process.is_alive() and process.exitcode not in (0, None):
                        errors.append(f"{name}: the replay stopped (exit code {process.exitcode})")
                        running.pop(name)
                if errors:
                    break
                continue
            running.pop(name).join()
            if error is not None:
                errors.append(f"{name}: {error}")
                break
            replays[name] = replayed
            bar.update(name, bar.total)
    finally:
        for process in running.values():
            process.terminate()
            process.join()
    if errors:
        raise BacktestError("; ".join(errors))
    return {name: replays[name] for name in names}
