"""A Griffe extension: `from ._fno import FNO as FNO` makes `FNO` a public name of the package.

sciml's subpackages keep their code in private modules and re-export the public names from
`__init__.py` with the redundant-alias idiom (PEP 484's explicit re-export). Griffe treats
imported names as private unless they are listed in `__all__`; this marks the redundant aliases
as public, so that `::: sciml.operators` documents exactly what `sciml/operators/__init__.py`
exports.
"""

import ast
from typing import Any

import griffe


class PublicReexports(griffe.Extension):
    def on_alias_instance(self, *, node: ast.AST | Any, alias: griffe.Alias, **kwargs: Any) -> None:
        if not isinstance(node, ast.Import | ast.ImportFrom):
            return
        for name in node.names:
            if name.asname is not None and name.asname == name.name == alias.name:
                alias.public = True
