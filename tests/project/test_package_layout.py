"""The package's layout follows the flow: substrate -> algorithms -> experiments -> analysis
-> operation. No module imports from a later stage, no imports go in a circle, and the
analysis side (reading records, drawing figures) loads neither the trainer nor
Torch-Pruning."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT

PACKAGE = PROJECT / "pf"
# Each stage may import from itself and from the stages before it.
STAGES = (
    ("substrate", {"pf.paths", "pf.provenance", "pf.storage", "pf.augment", "pf.data",
                   "pf.streaming", "pf.distributed", "pf.batches",
                   "pf.layers", "pf.mobilenet", "pf.vit", "pf.torchvision_models", "pf.models",
                   "pf.graphs", "pf.layout", "pf.train", "pf.flops"}),
    ("algorithms", {"pf.prune", "pf.fuse", "pf.select", "pf.scores", "pf.extrapolate",
                    "pf.coresets"}),
    ("experiments", "pf.experiments."),
    ("analysis", "pf.analysis."),
    ("operation", {"pf.executors", "pf.sweep", "pf.cli", "pf.__main__", "pf.notebook_saves"}),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _stage(module: str) -> int | None:
    """The stage's position in the flow; None for the package itself."""
    for position, (_, members) in enumerate(STAGES):
        if module in members if isinstance(members, set) else (module + ".").startswith(members):
            return position
    return None


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(module: str) -> set[str]:
    """The pf modules ``module`` imports when it runs (``if TYPE_CHECKING`` blocks left out)."""
    tree = ast.parse(MODULES[module].read_text())
    found = set()
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        pending.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES and name != module and name != "pf"}


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_module_has_a_stage():
    assert [m for m in MODULES if m != "pf" and _stage(m) is None] == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "pf"))
def test_no_module_imports_from_a_later_stage(module):
    against = sorted(name for name in GRAPH[module] if _stage(name) > _stage(module))
    assert against == [], f"{module} ({STAGES[_stage(module)][0]}) imports {against}"


def test_imports_never_go_in_a_circle():
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for name in sorted(GRAPH[module]):
            if state.get(name) == "open":
                cycles.append(path[path.index(name):] + [name])
            elif name not in state:
                visit(name, path + [name])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_a_cycle_and_a_backward_import_would_be_found():
    # The checks above see what they claim to: pf.experiments.run imports the trainer
    # (an earlier stage) and pf.cli (operation) imports the experiments.
    assert "pf.train" in GRAPH["pf.experiments.run"]
    assert _stage("pf.train") < _stage("pf.experiments.run") < _stage("pf.cli")


def test_the_analysis_side_loads_neither_the_trainer_nor_torch_pruning():
    analysis = sorted(m for m in MODULES if m.startswith("pf.analysis"))
    script = (f"import sys\nfor name in {analysis!r}: __import__(name)\n"
              "print(sorted(m for m in ('pf.train', 'torch_pruning', 'pf.prune', 'pf.fuse') "
              "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"
