"""Each piece of a site's state has one writer: a lint over the package's syntax trees."""

from __future__ import annotations

import ast
from pathlib import Path

import activator

PACKAGE = Path(activator.__file__).parent

# field -> the one module that may assign it (site.py sets the initial values in Site.__init__)
WRITERS = {
    **dict.fromkeys(
        ("_state", "_container_id", "_joined", "_host_port", "_up_since", "_failure", "_crashes", "_site_config"),
        "supervisor/lifecycle.py",
    ),
    **dict.fromkeys(("waiting", "active"), "supervisor/supervisor.py"),  # Demand: only the lease
    **dict.fromkeys(("_wanted", "_applied"), "supervisor/routes.py"),
    **dict.fromkeys(("_transitions", "_drains", "_stops"), "supervisor/work.py"),
}


def _assigned(tree: ast.AST) -> list[tuple[str, int]]:
    """(attribute, line) for every attribute assignment (plain, augmented, annotated, in tuples)."""
    found: list[tuple[str, int]] = []

    def targets(node: ast.expr) -> None:
        if isinstance(node, ast.Attribute):
            found.append((node.attr, node.lineno))
        elif isinstance(node, ast.Tuple | ast.List):
            for element in node.elts:
                targets(element)

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                targets(target)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets(node.target)
    return found


def test_only_the_named_writer_assigns_each_field() -> None:
    strays = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module.startswith("testing/"):
            continue  # the fakes have fields of the same names, of their own
        tree = ast.parse(path.read_text(), str(path))
        inits = {
            line
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef)
            for fn in cls.body
            if isinstance(fn, ast.FunctionDef) and fn.name == "__init__"
            for line in range(fn.lineno, (fn.end_lineno or fn.lineno) + 1)
        }
        for attr, line in _assigned(tree):
            owner = WRITERS.get(attr)
            if owner is not None and owner != module and not (line in inits and module in ("supervisor/site.py",)):
                strays.append(f"{module}:{line} assigns {attr} (only {owner} may)")
    assert strays == []


def test_the_lint_sees_assignments() -> None:
    # The check above is only as good as this: each form of assignment is found.
    tree = ast.parse("site._state = 1\na.b, site._host_port = 1, 2\nd.waiting += 1\nx.active: int = 0\n")
    assert {attr for attr, _ in _assigned(tree)} == {"_state", "b", "_host_port", "waiting", "active"}
