"""gridctl's controller path knows only what a deployment has: nothing in it imports the simulator."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTROLLER_PATH = ("gridctl/service", "gridctl/dispatch", "gridctl/forecast", "gridctl/assets")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): its imports never run."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of a file that can run: all of it but the bodies of `if TYPE_CHECKING:` blocks."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if _type_checking(node):
            todo.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imports(path: Path, module: str | None = None) -> set[str]:
    """Every module a file imports at run time (absolute names; relative imports resolved), at any depth."""
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _gridctl_file(module: str) -> Path | None:
    path = REPO / Path(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def test_nothing_in_the_controller_path_imports_the_simulator() -> None:
    roots = [p for folder in CONTROLLER_PATH if (REPO / folder).is_dir() for p in sorted((REPO / folder).rglob("*.py"))]
    assert roots, "no controller modules found"
    offenders: list[str] = []
    for root in roots:
        # Follow gridctl's own imports transitively: a helper the controller path uses counts too.
        seen: set[Path] = set()
        chain: dict[Path, Path | None] = {root: None}
        todo = [root]
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            for name in _imports(path):
                top = name.split(".")[0]
                if top == "sim":
                    trail, at = [], path
                    while at is not None:
                        trail.append(_module_name(at))
                        at = chain.get(at)
                    offenders.append(f"{' <- '.join(trail)} imports {name}")
                elif top == "gridctl":
                    # `from gridctl.x import y`: y may be a module or a name; both forms are tried.
                    for candidate in (name, name.rpartition(".")[0]):
                        target = _gridctl_file(candidate) if candidate else None
                        if target is not None and target not in seen:
                            chain.setdefault(target, path)
                            todo.append(target)
    assert not offenders, "\n".join(sorted(set(offenders)))


def test_the_scan_sees_an_import_of_the_simulator(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import sim.core\n    from ...sim.physics import noise\n"
                     "if TYPE_CHECKING:\n    import sim.site\n")
    names = _imports(probe, "gridctl.service.probe")
    assert "sim.core" in names and "sim.physics.noise" in names
    # A type-only import never runs.
    assert "sim.site" not in names
