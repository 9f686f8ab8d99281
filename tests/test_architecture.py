"""The package's shape, checked from its source (ast; nothing of it runs except in test (d)):
(a) a module imports only from its own layer or the layers below; (b) no import cycles;
(c) TensorFlow only in export/ and evaluate/gradients.py; (d) the edge runtime loads without
TensorFlow or Keras; (e) the on-disk layout's file names are spelled only in edgelabels/artifacts.py.

Imports at module and at function level count alike (a function-level import is still a dependency).
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "edgelabels"

# The layers, bottom to top (the README's "Architecture" paragraph quotes this table). A module may
# import from its own layer and the layers below it, never from a layer above. A module belongs to
# the first layer with a name equal to it or a package prefix of it; "edgelabels" alone is only the
# package's __init__ (importing the package is fine from anywhere).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("edgelabels", "edgelabels.errors", "edgelabels.atomic")),
    ("config", ("edgelabels.config", "edgelabels.tasks")),
    ("data", ("edgelabels.data",)),
    ("artifacts", ("edgelabels.artifacts",)),
    ("models", ("edgelabels.models",)),
    ("runtime", ("edgelabels.runtime",)),  # the edge: ONNX runner, Predictor, Segmenter, stages
    ("train", ("edgelabels.train",)),
    ("evaluate", ("edgelabels.evaluate",)),
    ("export", ("edgelabels.export",)),  # the only TensorFlow-side layer besides evaluate/gradients.py
    ("pipeline", ("edgelabels.pipeline", "edgelabels.jobs")),  # one job (train, evaluate, export); child jobs
    ("audit", ("edgelabels.audit",)),  # label audits: out-of-fold trainings as pipeline jobs, suspects (issue 28)
    ("tune", ("edgelabels.tune",)),  # studies of runs: trials and the chosen run's pipeline as child jobs
    ("serve", ("edgelabels.serve", "edgelabels.benchmark", "edgelabels.labeling")),  # labeling: Label Studio
    # the local Rekognition: projects, datasets, versions, jobs (issue 27); console: its pages (issue 29)
    ("service", ("edgelabels.service", "edgelabels.console")),
    ("cli", ("edgelabels.cli", "edgelabels.demo")),
]

# Where TensorFlow (and tf2onnx, which imports it) may be imported: a module, or a package and all under it.
TENSORFLOW_ALLOWED = ("edgelabels.export", "edgelabels.evaluate.gradients", "edgelabels.train.determinism")
TENSORFLOW_PACKAGES = ("tensorflow", "tf2onnx")

# The run directory's and export folder's file names: spelled only in the layout module.
LAYOUT_MODULE = "edgelabels.artifacts"
LAYOUT_NAMES = (
    "config.yaml", "labels.json", "preprocess.json", "model.keras", "history.csv", "train.log", "state.json",
    "last.keras", "thresholds.json", "model.onnx", "model.int8.onnx", "export_report.json", "segment.json",
    "segmentation.json", "stages.json", "layout.json", "recipe.json", "calibration.json", "segment-cache", "stage-cache", "review.json",
)

CYCLES_TOOL = REPO.parent / "shared" / "tools" / "import_cycles.py"


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    found = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@functools.cache
def tree(module: str) -> ast.Module:
    return ast.parse(modules()[module].read_text(encoding="utf-8"), filename=str(modules()[module]))


def _absolute(module: str, level: int, name: str | None) -> str:
    """The absolute name `from <level dots><name> import ...` means inside `module`."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if modules()[module].name != "__init__.py":
        base = base[:-1]  # relative to the module's package
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _own_module(name: str) -> str:
    """The package module that importing `name` loads last: `edgelabels.x.y.func` -> edgelabels.x.y."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name


def imports(module: str) -> list[tuple[int, str]]:
    """(line, imported name) for every import in the module, function-level ones included.

    `from pkg import name` imports pkg.name when that is a module, else pkg; names inside the package
    are reduced to the module they load. Calls to importlib.import_module / __import__ with a constant
    name count too.
    """
    found = []
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node.level, node.module)
            found += [(node.lineno, f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base)
                      for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and ast.unparse(node.func) in ("importlib.import_module",
                                                                                        "__import__")):
            found.append((node.lineno, node.args[0].value))
    return list(dict.fromkeys((line, _own_module(name) if _top(name) == PACKAGE else name) for line, name in found))


def _top(name: str) -> str:
    return name.split(".")[0]


def _belongs(module: str, prefix: str) -> bool:
    return module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))


def layer_of(module: str) -> int | None:
    return next((i for i, (_, prefixes) in enumerate(LAYERS) if any(_belongs(module, p) for p in prefixes)), None)


def _layer(i: int) -> str:
    return f"layer {i} {LAYERS[i][0]}"


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == [], "add these modules to LAYERS"


def test_modules_import_only_from_their_own_layer_or_below():
    offenders = []
    for module in modules():
        own = layer_of(module)
        for line, target in imports(module):
            if _top(target) != PACKAGE or own is None:
                continue
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                offenders.append(f"{module}:{line} imports {target} ({_layer(theirs)} above {_layer(own)})")
    assert offenders == [], "imports from a higher layer:\n" + "\n".join(offenders)


def test_no_import_cycles_between_modules():
    if not CYCLES_TOOL.is_file():
        pytest.skip(f"{CYCLES_TOOL} is absent (CI has ../shared beside the repository)")
    done = subprocess.run([sys.executable, str(CYCLES_TOOL), PACKAGE], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONHASHSEED": "0"})
    cycles = sorted(done.stdout.splitlines())
    assert cycles == [] and done.returncode == 0, "import cycles:\n" + "\n".join(cycles) + done.stderr


def test_only_export_and_evaluate_gradients_import_tensorflow():
    offenders = [f"{module}:{line} imports {target}"
                 for module in modules() if not any(_belongs(module, p) for p in TENSORFLOW_ALLOWED)
                 for line, target in imports(module) if _top(target) in TENSORFLOW_PACKAGES]
    assert offenders == [], "TensorFlow outside export/ and evaluate/gradients.py:\n" + "\n".join(offenders)


def test_the_edge_runtime_imports_neither_tensorflow_nor_keras():
    script = ("import json, sys\n"
              "import edgelabels.runtime.predictor, edgelabels.serve.predict_command\n"
              "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
              "print(json.dumps(heavy))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def _docstrings(module: ast.Module) -> set[int]:
    """ids of the Constant nodes that are docstrings (of the module, a class or a function)."""
    found = set()
    for node in ast.walk(module):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def spells_a_layout_name(text: str) -> bool:
    return any(text == name or text.endswith("/" + name) for name in LAYOUT_NAMES)


def test_spells_a_layout_name_matches_whole_names_and_path_ends_only():
    assert spells_a_layout_name("model.onnx") and spells_a_layout_name("/model.onnx")
    assert spells_a_layout_name("export/model.int8.onnx") and spells_a_layout_name("segment-cache")
    assert not spells_a_layout_name("model.onnx (0.0 MB)") and not spells_a_layout_name("my_model.onnx")


def test_layout_file_names_are_spelled_only_in_the_layout_module():
    offenders = []
    for module, path in modules().items():
        if module == LAYOUT_MODULE:
            continue
        parsed = tree(module)
        docstrings = _docstrings(parsed)
        offenders += [f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}" for node in ast.walk(parsed)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str)
                      and id(node) not in docstrings and spells_a_layout_name(node.value)]
    assert offenders == [], f"layout names outside {LAYOUT_MODULE}:\n" + "\n".join(offenders)


# A task-dispatch branch: a test of a task's name (`task == "detection"`, `.task != ...`, `task in (...)`) or a
# comparison with a task's name literal. Outside tasks.py only refusal guards may remain (issue 24: at most 8).
DISPATCH = re.compile(r"""\btask\s*(==|!=)(?!\s*AUTO\b)|\btask\s+in\s*[\(\[\{]|(==|!=)\s*["'](classification|multilabel|segmentation|detection)["']""")
MAX_DISPATCH = 8


def test_tasks_differ_through_the_task_table_not_through_branches_on_their_names():
    found = []
    root = Path(__file__).resolve().parent.parent / PACKAGE
    for path in sorted(root.rglob("*.py")):
        if path == root / "tasks.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if DISPATCH.search(code):
                found.append(f"{path.relative_to(root.parent)}:{number}: {line.strip()}")
    assert len(found) <= MAX_DISPATCH, "task-dispatch branches outside tasks.py:\n" + "\n".join(found)
