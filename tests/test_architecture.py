"""How the package is laid out: what one module may take from another.

A name that starts with an underscore belongs to its own module. What several modules share
lives in a private module under a public name (`sciml.train._lifecycle.open_run`,
`sciml._validate.check_floating_dtype`), as Equinox and Diffrax do, so that a reader sees at
the import what is meant to be used from outside.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "sciml"


def _room(module: str) -> str:
    """The subpackage a module belongs to (`sciml.train._fit` -> `train`), or `sciml` for the
    top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "sciml"


def _private_imports(package_dir: Path = PACKAGE) -> list[tuple[str, str, str]]:
    """`(module, from, name)` of every underscore name a module imports from another one."""
    found = []
    root = package_dir.parent
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        package = parts[:-1]
        module = ".".join(parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(package_dir.name):
                continue
            for alias in node.names:
                name = alias.name
                where = root / Path(*f"{target}.{name}".split("."))
                is_module = where.with_suffix(".py").is_file() or where.is_dir()
                if name.startswith("_") and not name.startswith("__") and not is_module:
                    found.append((module, target, name))
    return found


def test_the_scan_sees_private_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import _a\n")
    (package / "sub" / "_a.py").write_text("def _helper(): ...\n")
    (package / "sub" / "_b.py").write_text("def f():\n    from ._a import _helper\n")
    (package / "_c.py").write_text("from .sub._a import _helper as h\n")
    assert _private_imports(package) == [
        ("pkg._c", "pkg.sub._a", "_helper"),
        ("pkg.sub._b", "pkg.sub._a", "_helper"),
    ]
    assert _room("pkg._c") != _room("pkg.sub._a") and _room("pkg.sub._b") == "sub"


def test_no_private_name_is_imported_from_another_module():
    """Not across subpackages, and not between the modules of one subpackage either."""
    found = [
        f"{module} imports {name} from {target}" for module, target, name in _private_imports()
    ]
    assert found == []


def _imports() -> dict[str, set[str]]:
    """Every module's imports of other sciml modules, at module level or inside functions: the
    module a `from X import name` reads, and `X.name` where that is a module."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
            package = parts
        else:
            package = parts[:-1]
        modules[".".join(parts)] = (path, package)

    def typing_only(tree):
        # `if TYPE_CHECKING:` blocks run for type checkers only.
        return {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
            for inner in ast.walk(node)
        }

    graph = {}
    for module, (path, package) in modules.items():
        targets = set()
        tree = ast.parse(path.read_text())
        skipped = typing_only(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = list(package[: len(package) - node.level + 1])
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                target, names = "", [alias.name for alias in node.names]
            else:
                continue
            submodules = [name for name in names if name in modules]
            # `from package import submodule` reads the submodule, not the package's names.
            for name in submodules or [target]:
                if name in modules and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_search_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    """No module imports, directly or through others, a module that imports it back: neither
    at module level nor inside functions (a deferred import hides a cycle, it does not
    remove it). A package's `__init__` counts as the package."""
    graph = _imports()
    assert "sciml._app.config" in graph["sciml._app.cli"]
    assert _cycles(graph) == []


def test_the_library_does_not_import_the_application_layer():
    """`sciml._app` (command line, configs, runners) sits on top of the library: only
    `python -m sciml` and `sciml.load_model` (which rebuilds a run's model from its config)
    enter it from below."""
    graph = _imports()
    upward = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if not module.startswith("sciml._app") and module not in ("sciml.__main__", "sciml")
        for target in targets
        if target.startswith("sciml._app")
    ]
    assert upward == []
