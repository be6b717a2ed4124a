"""Layering rules between packages, checked on the source with ``ast``.

Every ``import`` / ``from ... import`` in ``dpir/`` and ``baselines/`` counts,
at any level: module top, inside functions (lazy imports), inside ``if
TYPE_CHECKING`` blocks.  Relative imports are resolved against the file's
package.  A violation prints as ``file:line module -> imported``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dpir", "baselines")

# (importer prefix, forbidden imported prefixes)
NEVER = (
    ("dpir.nets", ("dpir.data",)),
    ("dpir.diffusion", ("dpir.nets", "dpir.data")),
    ("dpir.report", ("dpir.methods", "dpir.nets")),
    ("dpir.metrics", ("dpir.methods",)),
    ("dpir.train", ("dpir.methods",)),
    ("", ("snakemake",)),  # nothing imports snakemake
)


def _within(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, root: Path = ROOT):
    """Yield ``(line, imported module)`` for every import in ``path``.

    ``from a.b import c`` yields both ``a.b`` and ``a.b.c`` (``c`` may be a
    submodule); the rules match on prefixes, so the extra name only matters
    when ``c`` is one.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{target}.{alias.name}"


def source_files():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def violations():
    found = []
    for path in source_files():
        module = module_name(path)
        seen = set()
        for line, imported in imported_names(path):
            for importer, forbidden in NEVER:
                if not _within(module, importer):
                    continue
                for prefix in forbidden:
                    if _within(imported, prefix) and (line, prefix) not in seen:
                        seen.add((line, prefix))
                        rel = path.relative_to(ROOT)
                        found.append(f"{rel}:{line} {module} -> {imported}")
    return found


def test_never_import_list():
    found = violations()
    for item in found:
        print(item)
    assert not found, "import rule violations:\n" + "\n".join(found)


def test_checker_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself: a lazy import inside a function, a relative import
    and a plain ``import a.b`` are all found."""
    pkg = tmp_path / "dpir" / "nets"
    pkg.mkdir(parents=True)
    (tmp_path / "dpir" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text(
        "def f():\n    from ..data import burst\n    import dpir.data.images\n"
    )
    names = list(imported_names(pkg / "x.py", tmp_path))
    assert (2, "dpir.data") in names
    assert (2, "dpir.data.burst") in names
    assert (3, "dpir.data.images") in names


def test_workflow_facts_is_torch_free():
    """dpir.workflow_facts is what the Snakefile, the report and scripts/ ask about method configs:
    it imports nothing but the standard library and the torch-free task kinds (dpir.tasks, whose
    torch-freeness tests/test_task_kinds.py checks in a fresh interpreter)."""
    path = ROOT / "dpir" / "workflow_facts.py"
    names = {name for _, name in imported_names(path)}
    assert names <= {"__future__", "__future__.annotations", "dpir.tasks", "dpir.tasks.task_kind"}, names

