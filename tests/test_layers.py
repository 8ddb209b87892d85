"""The one-way import rule: each subpackage of poolhead imports only its own layer and the layers before it,
core -> data -> speed -> run -> sweep -> use (walked with ast: no import runs). The package root
(`poolhead/__init__.py`: the bundled MiniLM's path, config resolvers, lazy `poolhead.build`) is above every layer."""

import ast
import shutil
from pathlib import Path

LAYERS = ("core", "data", "speed", "run", "sweep", "use")
SRC = Path(__file__).resolve().parents[1] / "src" / "poolhead"
ROOT_NAMES = {"build": "run", "load": "use", "resolvers": "sweep"}  # root names, and the layer they reach


def imports(path: Path, src: Path = SRC) -> list[tuple[str, int]]:
    """(module, line) for every poolhead module `path` imports, at top level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):  # relative: resolved against the module's own package
            package = ["poolhead", *path.parent.relative_to(src).parts]
            package = ".".join(package[:len(package) - node.level + 1])
            found += [(f"{package}.{node.module or alias.name}", node.lineno) for alias in node.names]
    return [(module, line) for module, line in found if module.split(".")[0] == "poolhead"]


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else ROOT_NAMES.get(parts[1])


def violations(src: Path = SRC) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).parts
        if len(parts) == 1:
            continue  # the package root
        assert parts[0] in LAYERS, f"{path}: {parts[0]}/ is in no layer; add it to LAYERS in its place"
        own = LAYERS.index(parts[0])
        for module, line in imports(path, src):
            layer = layer_of(module)
            if layer is not None and LAYERS.index(layer) > own:
                found.append(f"{path.relative_to(src)}:{line} ({parts[0]}) imports {module} ({layer})")
    return found


def test_each_layer_imports_only_itself_and_the_layers_before_it():
    assert violations() == []


def test_the_rule_fails_when_core_imports_a_later_layer(tmp_path):
    """The bug it catches: the encoder reaching into `speed` again (as it did before the layers), or a head into
    `run`."""
    copy = tmp_path / "poolhead"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "core" / "encoder.py").open("a") as f:
        f.write("\nfrom poolhead.speed.dropout import use_fast_dropout  # noqa\n")
    with (copy / "core" / "heads.py").open("a") as f:
        f.write("\ndef _late():\n    from poolhead import build  # noqa\n")
    found = violations(copy)
    assert len(found) == 2 and "core/encoder.py" in found[0] and "imports poolhead.speed.dropout" in found[0], found
    assert "core/heads.py" in found[1] and "(run)" in found[1], found
