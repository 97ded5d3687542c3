"""How the package is laid out: what one subpackage may take from another.

A name that starts with an underscore belongs to its own subpackage (`sciml.train`,
`sciml.pinn`, ...). What several share lives in a private module under a public name
(`sciml.train._lifecycle.open_run`, `sciml._dtypes.check_floating_dtype`), as Equinox and
Diffrax do, so that a reader sees at the import what is meant to be used from outside.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "sciml"


def _room(module: str) -> str:
    """The subpackage a module belongs to (`sciml.train._fit` -> `train`), or `sciml` for the
    top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "sciml"


def _private_imports() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
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
            if not target.startswith("sciml"):
                continue
            for alias in node.names:
                name = alias.name
                is_module = (PACKAGE.parent / Path(*f"{target}.{name}".split("."))).with_suffix(
                    ".py"
                ).is_file() or (PACKAGE.parent / Path(*f"{target}.{name}".split("."))).is_dir()
                if name.startswith("_") and not name.startswith("__") and not is_module:
                    found.append((module, target, name))
    return found


def test_the_scan_sees_private_imports():
    within = [(m, t, n) for m, t, n in _private_imports() if _room(m) == _room(t)]
    assert ("sciml.train._fit", "sciml.train._batching", "_iterate") in within


def test_no_private_name_is_imported_across_subpackages():
    across = [
        f"{module} imports {name} from {target}"
        for module, target, name in _private_imports()
        if _room(module) != _room(target)
    ]
    assert across == []
