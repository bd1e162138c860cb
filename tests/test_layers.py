"""The package's layers import downward only (docs/architecture.md):

``cli -> study -> training -> models -> quantizers, data -> ops, nn, metrics and the helpers``

Read from the source with ``ast``, so an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import fqvae

PACKAGE = Path(fqvae.__file__).resolve().parent
# higher number = higher layer; a module may import its own layer or a lower one
LAYERS = {
    "cli": 6,
    "__main__": 6,
    "study": 5,
    "training": 4,
    "models": 3,
    "quantizers": 2,
    "data": 2,
    "ops": 1,
    "nn": 1,
    "metrics": 1,
    "plots": 1,
    "backends": 0,
    "reference": 0,
    "schedules": 0,
    "files": 0,
    "locks": 0,
    "kernels": 0,
    "csrc": 0,
    "__init__": 7,  # the top-level package re-exports the public API
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            if node.module == "fqvae":  # submodules only, not names such as __version__
                names += [
                    f"fqvae.{a.name}"
                    for a in node.names
                    if (PACKAGE / a.name).is_dir() or (PACKAGE / f"{a.name}.py").is_file()
                ]
    return [n for n in names if n == "fqvae" or n.startswith("fqvae.")]


def test_every_import_runs_downward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = "fqvae." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        mine = _layer(module.removesuffix(".__init__") if path.name == "__init__.py" else module)
        assert mine in LAYERS, f"{module}: add its layer to LAYERS"
        for name in _imports(path):
            theirs = _layer(name)
            if name != "fqvae" and LAYERS[theirs] > LAYERS[mine]:
                upward.append(f"{module} imports {name} ({mine} -> {theirs})")
    assert not upward, "\n".join(upward)


def _module_name(path: Path) -> str:
    name = ".".join(("fqvae", *path.relative_to(PACKAGE).with_suffix("").parts))
    return name.removesuffix(".__init__")


def _module_graph() -> dict[str, set[str]]:
    """Module -> the fqvae modules it imports; ``from pkg import sub`` counts as ``pkg.sub``
    only, since it does not need the rest of ``pkg``."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                deps |= subs if len(subs) == len(node.names) else subs | {node.module}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names} & set(modules)
        graph[name] = deps - {name}
    return graph


def test_no_modules_import_each_other_in_a_loop():
    graph, done, loops = _module_graph(), set(), []

    def visit(module: str, path: list[str]) -> None:
        for dep in sorted(graph[module]):
            if dep in path:
                loops.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in done:
                visit(dep, [*path, dep])
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])
    assert not loops, "\n".join(loops[:10])
