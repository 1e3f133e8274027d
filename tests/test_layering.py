"""The encoder package stands on its own (docs/design.md): mtbert/bert imports nothing of mtbert but
itself and compiled_kernel.py, which imports nothing of mtbert at all."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mtbert"


def package_imports(path: Path) -> set[str]:
    """Modules of mtbert a file imports, as dotted names relative to the package ('bert.model', ...)."""
    here = path.parent.relative_to(PACKAGE).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[: len(here) - (node.level - 1)])
            found.add(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mtbert"):
            found.add(node.module.removeprefix("mtbert").lstrip("."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("mtbert").lstrip(".") for a in node.names if a.name.startswith("mtbert"))
    return found


def test_the_encoder_imports_only_itself_and_the_compile_helper():
    for path in sorted((PACKAGE / "bert").glob("*.py")):
        outside = {m for m in package_imports(path) if m != "bert" and not m.startswith("bert.")}
        assert outside <= {"compiled_kernel"}, (path.name, outside)


def test_the_compile_helper_imports_nothing_of_the_package():
    assert package_imports(PACKAGE / "compiled_kernel.py") == set()


def test_the_check_sees_an_import_from_outside():
    assert package_imports(PACKAGE / "bert" / "hashed_dropout.py") == {"compiled_kernel"}
    assert "bert.dropout" in package_imports(PACKAGE / "bert" / "model.py")
