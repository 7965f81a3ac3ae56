"""The optimiser's result: setpoints per step, objective breakdown, violations and solver report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from optimizer.highs import WarmStart


@dataclass(frozen=True)
class Violation:
    """A requirement not met (soft) or a hard limit found broken after the solve."""

    asset_id: str
    kind: str
    start: datetime
    end: datetime
    amount: float
    unit: str
    hard: bool = False

    def describe(self) -> str:
        tag = "HARD " if self.hard else ""
        return (
            f"{tag}{self.asset_id} {self.kind}: {self.amount:.3f} {self.unit} "
            f"from {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"
        )


@dataclass(frozen=True)
class ObjectiveTerm:
    """One term of the objective, in its own unit and in € after the policy's weight."""

    name: str
    value: float
    unit: str
    eur: float


@dataclass
class Schedule:
    setpoints: pd.DataFrame
    objective: dict[str, ObjectiveTerm]
    violations: list[Violation]
    status: str
    solver: str
    mip_gap: float | None
    build_s: float
    solve_s: float
    n_variables: int = 0
    n_binaries: int = 0
    n_constraints: int = 0
    notes: list[str] = field(default_factory=list)
    # Where the next horizon's solve of the same structure may start (None: a MIP, or no optimal LP).
    warm_start: WarmStart | None = field(default=None, repr=False)

    @property
    def objective_eur(self) -> float:
        """The objective in € (0 without a schedule: check `has_solution` before reading it as a cost)."""
        return sum(t.eur for t in self.objective.values())

    @property
    def hard_violations(self) -> list[Violation]:
        return [v for v in self.violations if v.hard]

    @property
    def has_solution(self) -> bool:
        return self.status in ("optimal", "time_limit")

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly report (no setpoints)."""
        return {
            "status": self.status,
            "solver": self.solver,
            "mip_gap": self.mip_gap,
            "build_s": round(self.build_s, 4),
            "solve_s": round(self.solve_s, 4),
            "objective_eur": self.objective_eur,
            "objective": {k: asdict(v) for k, v in self.objective.items()},
            "violations": [
                {**asdict(v), "start": v.start.isoformat(), "end": v.end.isoformat()} for v in self.violations
            ],
            "size": {
                "variables": self.n_variables,
                "binaries": self.n_binaries,
                "constraints": self.n_constraints,
            },
            "notes": self.notes,
        }

    def report(self) -> str:
        """Human-readable objective breakdown and violations."""
        gap = "n/a" if self.mip_gap is None else f"{self.mip_gap:.4%}"
        lines = [
            f"status: {self.status} (solver {self.solver}, gap {gap}, "
            f"build {self.build_s:.2f} s, solve {self.solve_s:.2f} s)",
        ]
        if not self.has_solution:
            lines.append("no schedule: no objective and no violations to report")
            lines.extend("note: " + n for n in self.notes)
            return "\n".join(lines)
        lines.append(f"objective: {self.objective_eur:.4f} EUR")
        for t in self.objective.values():
            lines.append(f"  {t.name:<28} {t.value:>12.4f} {t.unit:<6} {t.eur:>12.4f} EUR")
        lines.append(f"violations: {len(self.violations)}")
        lines.extend("  " + v.describe() for v in self.violations)
        lines.extend("note: " + n for n in self.notes)
        return "\n".join(lines)
