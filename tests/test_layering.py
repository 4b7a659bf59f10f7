"""The package's layers, read from its imports: a lower layer never imports a higher one.

    base (registry, atomic, fingerprints, stages, version) < saes < assignment < sources < matching
    < evaluation < flow < report < lfp;  world sits on sources alone;  cli on everything.

Only the command line picks the embedded world: nothing else in the package imports it.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "sae_lens_match"
BASE = {"registry", "atomic", "fingerprints", "stages", "version"}
ALLOWED = {
    "base": BASE,
    "saes": BASE,
    "assignment": {"registry"},  # nothing else of the package: pure numerics
    "sources": BASE | {"saes"},
    "matching": BASE | {"saes", "assignment", "sources"},
    "evaluation": BASE | {"saes", "assignment", "sources", "matching"},
    "flow": BASE | {"saes", "assignment", "sources", "matching", "evaluation"},
    "report": BASE | {"saes", "assignment", "sources", "matching", "evaluation", "flow"},
    "lfp": BASE | {"saes", "assignment", "sources", "matching", "evaluation", "flow", "report"},
    "world": BASE | {"saes", "sources"},
    "package": BASE | {"saes", "sources", "matching"},  # sae_lens_match/__init__.py re-exports
    "cli": BASE | {"saes", "assignment", "sources", "matching", "evaluation", "flow", "report", "lfp", "world"},
}


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    if len(parts) == 1:
        return "package" if parts[0] == "__init__.py" else "base"
    return parts[0]


def _imported_layers(path: Path) -> dict[str, int]:
    """Top-level parts of ``sae_lens_match`` that ``path`` imports, with a line number each."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        modules = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names] if node.module == "sae_lens_match" else [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "sae_lens_match" and len(parts) > 1:
                found.setdefault(parts[1], node.lineno)
    return found


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PACKAGE)) for p in FILES])
def test_imports_respect_the_layers(path):
    layer = _layer(path)
    if layer == "world" and path.name == "__main__.py":
        return  # ``python -m sae_lens_match.world``: an entry point, an alias of the cli
    bad = {f"{name} (line {line})" for name, line in _imported_layers(path).items() if name != layer and name not in ALLOWED[layer]}
    assert not bad, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(bad)}"


def test_the_layer_map_knows_every_folder():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders <= set(ALLOWED), folders - set(ALLOWED)


def test_only_the_command_line_imports_the_world():
    importers = {_layer(p) for p in FILES if "world" in _imported_layers(p) and _layer(p) != "world"}
    assert importers <= {"cli"}, importers
