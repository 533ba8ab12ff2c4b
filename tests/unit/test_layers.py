"""The layering of the package, as the README's Development section states
it: a module imports only from its own layer or the layers below."""
import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "oneiscsi"


def readme_layers() -> dict[str, int]:
    """Module name (`cli` for the folder, `tgt` for tgt.py) -> its layer's number."""
    section = (REPO / "README.md").read_text().split("\n## Development\n", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for number, cells in re.findall(r"^\| (\d) [^|]*\| ([^|]*) \|", section, re.MULTILINE):
        for name in re.findall(r"`([^`]+)`", cells):
            layers[name.removesuffix("/").removesuffix(".py")] = int(number)
    return layers


LAYERS = readme_layers()
MODULES = sorted(str(path.relative_to(PACKAGE).with_suffix("")).replace("/", ".").removesuffix(".__init__")
                 for path in PACKAGE.rglob("*.py"))


def layer_of(module: str) -> int:
    """module: dotted, relative to the package (`cli.image`, `tgt`)."""
    for name in (module, module.split(".")[0]):
        if name in LAYERS:
            return LAYERS[name]
    raise AssertionError(f"{module} is in no layer of the README's table")


def imports_of(module: str, source: str) -> set[str]:
    """The package modules that source (the text of module) imports, anywhere in it."""
    is_package = (PACKAGE / module.replace(".", "/") / "__init__.py").exists()
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
            for alias in node.names:
                name = ".".join([*base, alias.name])
                found.add(name if name in MODULES else ".".join(base) or "__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("oneiscsi."):
            found.add(node.module.split(".", 1)[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("oneiscsi."))
    return found - {module}


def upward(module: str, source: str) -> dict[str, int]:
    mine = layer_of(module)
    return {name: layer_of(name) for name in imports_of(module, source) if layer_of(name) < mine}


def test_the_readme_names_every_layer_and_every_module_has_one():
    assert sorted(set(LAYERS.values())) == list(range(1, 8)), LAYERS
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", MODULES)
def test_imports_flow_down(module):
    path = PACKAGE / module.replace(".", "/")
    source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()
    assert upward(module, source) == {}, f"{module} (layer {layer_of(module)}) imports from a layer above it"


def test_the_check_sees_imports_that_go_up():
    assert imports_of("cli.image", "from .common import x\nfrom .. import datastore\n") == {
        "cli.common", "datastore"}
    assert upward("tgt", "from .run import Runner\n") == {"run": 5}
    assert upward("datastore", "def f():\n    from . import opennebula\n") == {"opennebula": 2}
    assert upward("run", "import oneiscsi.targets\n") == {"targets": 4}
    assert upward("tm", "from .command import command\nfrom . import initiator\n") == {}
