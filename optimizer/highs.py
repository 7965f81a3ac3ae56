"""PuLP's HiGHS interface, passing the model to HiGHS in one call and reading back primal values only.

PuLP's own `HiGHS` adds every column and row through a Python call each, sorts the variables three times
and reads duals and slacks back one by one; for the service's models that took longer than HiGHS itself.
This one gives HiGHS the same model (columns in PuLP's order, rows in insertion order, the same bounds
and coefficients) as arrays in a single `passModel`, so it solves the same problem the same way. It reads
back each variable's value (`varValue`), not duals (`dj`, `pi`) nor slacks, which the optimiser does not use.

A receding-horizon caller solving the same structure again with new data can hand it the previous LP's
basis (`WarmStart`): HiGHS then starts its simplex from there instead of from scratch. A basis that does
not fit (another structure) is ignored; it changes where the simplex starts, never what is optimal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pulp
from pulp import constants

# HiGHS model status name -> (PuLP status, PuLP solution status), as PuLP's own interface maps them.
_STATUS: dict[str, tuple[int, int]] = {
    "kOptimal": (constants.LpStatusOptimal, constants.LpSolutionOptimal),
    "kInfeasible": (constants.LpStatusInfeasible, constants.LpSolutionInfeasible),
    "kUnboundedOrInfeasible": (constants.LpStatusInfeasible, constants.LpSolutionInfeasible),
    "kUnbounded": (constants.LpStatusUnbounded, constants.LpSolutionUnbounded),
    "kObjectiveBound": (constants.LpStatusOptimal, constants.LpSolutionIntegerFeasible),
    "kObjectiveTarget": (constants.LpStatusOptimal, constants.LpSolutionIntegerFeasible),
    "kInterrupt": (constants.LpStatusOptimal, constants.LpSolutionIntegerFeasible),
    "kTimeLimit": (constants.LpStatusOptimal, constants.LpSolutionIntegerFeasible),
    "kIterationLimit": (constants.LpStatusOptimal, constants.LpSolutionIntegerFeasible),
}
_NOT_SOLVED = (constants.LpStatusNotSolved, constants.LpSolutionNoSolutionFound)


@dataclass(frozen=True)
class WarmStart:
    """An LP's optimal basis: where the simplex of the next solve of the same structure may start."""

    num_col: int
    num_row: int
    basis: Any  # highspy.HighsBasis

    def __reduce__(self) -> tuple[Any, ...]:
        # HiGHS's basis does not pickle; its statuses do (a schedule may come back from another process).
        return _warm_start, (self.num_col, self.num_row, [int(s) for s in self.basis.col_status],
                             [int(s) for s in self.basis.row_status])


def _warm_start(num_col: int, num_row: int, col_status: list[int], row_status: list[int]) -> WarmStart:
    import highspy

    basis = highspy.HighsBasis()
    basis.col_status = [highspy.HighsBasisStatus(s) for s in col_status]
    basis.row_status = [highspy.HighsBasisStatus(s) for s in row_status]
    basis.valid = True
    return WarmStart(num_col, num_row, basis)


class Highs(pulp.HiGHS):  # type: ignore[misc, valid-type]
    """`pulp.HiGHS` with the model passed as arrays; `warm_start` seeds an LP's simplex."""

    def __init__(self, *args: Any, warm_start: WarmStart | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.warm_start = warm_start
        # The variables in column order, once the model is built.
        self.columns: list[pulp.LpVariable] = []
        self.is_mip = False

    def buildSolverModel(self, lp: pulp.LpProblem) -> None:
        import highspy

        inf = highspy.kHighsInf
        columns = lp.variables()  # PuLP's column order: sorted by name
        self.columns = columns
        n = len(columns)
        sign = -1.0 if lp.sense == constants.LpMaximize else 1.0
        objective = lp.objective or {}
        cost = np.zeros(n)
        lower = np.empty(n)
        upper = np.empty(n)
        integer = np.zeros(n, dtype=np.int32)
        for i, var in enumerate(columns):
            var.index = i
            c = objective.get(var)
            if c:
                cost[i] = sign * c
            lower[i] = -inf if var.lowBound is None else var.lowBound
            upper[i] = inf if var.upBound is None else var.upBound
            if var.cat == constants.LpInteger and self.mip:
                integer[i] = 1
        starts = [0]
        index: list[int] = []
        value: list[float] = []
        constraints = list(lp._constraints.values())
        row_lower = np.empty(len(constraints))
        row_upper = np.empty(len(constraints))
        for r, constraint in enumerate(constraints):
            constraint.index = r
            for var, coefficient in constraint.items():
                if coefficient != 0:
                    index.append(var.index)
                    value.append(coefficient)
            starts.append(len(index))
            bound = -constraint.constant
            sense = constraint.sense
            row_lower[r] = bound if sense != constants.LpConstraintLE else -inf
            row_upper[r] = bound if sense != constants.LpConstraintGE else inf
        # No objective offset: PuLP's interface leaves the constant out of what HiGHS reports too.
        status = lp.solverModel.passModel(
            n, len(constraints), len(index), highspy.MatrixFormat.kRowwise.value, highspy.ObjSense.kMinimize.value,
            0.0, cost, lower, upper, row_lower, row_upper,
            np.asarray(starts[:-1], dtype=np.int32), np.asarray(index, dtype=np.int32), np.asarray(value, dtype=float),
            integer,
        )
        if status == highspy.HighsStatus.kError:
            raise pulp.PulpSolverError("HiGHS refused the model")
        self.is_mip = bool(integer.any())
        start = self.warm_start
        if start is not None and not self.is_mip and (start.num_col, start.num_row) == (n, len(constraints)):
            lp.solverModel.setBasis(start.basis)

    def findSolutionValues(self, lp: pulp.LpProblem) -> tuple[int, int]:
        h = lp.solverModel
        name = h.getModelStatus().name
        values = h.getSolution().col_value
        if len(values) == len(self.columns):
            for var, x in zip(self.columns, values, strict=True):
                var.varValue = x
        if name in ("kTimeLimit", "kIterationLimit") and h.getObjectiveValue() == float("inf"):
            return _NOT_SOLVED
        return _STATUS.get(name, _NOT_SOLVED)

    def actualSolve(self, lp: pulp.LpProblem) -> int:
        self.createAndConfigureSolver(lp)
        self.buildSolverModel(lp)
        self.callSolver(lp)
        status, solution_status = self.findSolutionValues(lp)
        lp.assignStatus(status, solution_status)
        return status

    def warm_start_after(self, lp: pulp.LpProblem) -> WarmStart | None:
        """The basis of an LP just solved to optimality, for the next solve of its structure."""
        import highspy

        h = getattr(lp, "solverModel", None)
        if h is None or self.is_mip or h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        basis = h.getBasis()
        if not basis.valid:
            return None
        return WarmStart(h.getNumCol(), h.getNumRow(), basis)
