"""Which fixtures train or export a real Keras model, read from their code, so conftest marks their tests slow.

A list of fixture names let a new training fixture count as fast. Instead, a fixture makes a model when its
code, or a function of its own module that it calls (followed by name, however deep), does one of:
- calls a helper marked `@makes_a_model` (runs.make_run, segmentation.make_export, ...);
- imports from edgelabels.train or edgelabels.export (the fit loop, the ONNX export);
- calls `main` with "train", "tune" or "export" as the verb (the CLI in-process: `main(["train", ...])`).
(A study's tests fake their trials, or carry @pytest.mark.slow: importing edgelabels.tune alone is not enough.)
`pytest -m "not slow"` then leaves out every test whose fixtures (however deep) make a model.
"""

from __future__ import annotations

import dis
import types

MODEL_MODULES = ("edgelabels.train", "edgelabels.export")
MODEL_VERBS = {"train", "tune", "export"}


def makes_a_model(helper):
    """Mark a test helper that trains or exports a Keras model (fixtures calling it are slow)."""
    helper.makes_a_model = True
    return helper


def function_makes_a_model(function, seen: set | None = None) -> bool:
    """True if `function` (a fixture's function) trains or exports, by the rules in the module docstring."""
    seen = set() if seen is None else seen
    function = getattr(function, "__func__", function)  # a fixture defined as a method
    if not isinstance(function, types.FunctionType) or function in seen:
        return False
    seen.add(function)
    for code in _codes(function.__code__):
        instructions = list(dis.get_instructions(code))
        if any(_is_model_import(i) for i in instructions) or _calls_main_with_a_model_verb(instructions):
            return True
        for name in code.co_names:
            called = function.__globals__.get(name)
            if getattr(called, "makes_a_model", False):
                return True
            if getattr(called, "__module__", None) == function.__module__ and function_makes_a_model(called, seen):
                return True
    return False


def _codes(code: types.CodeType):
    """A code object and every code object nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _codes(constant)


def _calls_main_with_a_model_verb(instructions) -> bool:
    """`main(["train", ...])`: code that loads the name `main` and a verb constant that is not a subscript key
    (`folders["export"]` is not the export verb). Order is not relied on: pytest's assertion rewriting builds the
    argument list before it loads `main`."""
    if not any(i.argval == "main" and "LOAD" in i.opname for i in instructions):
        return False
    return any(i.opname == "LOAD_CONST" and i.argval in MODEL_VERBS and after.opname != "BINARY_SUBSCR"
               for i, after in zip(instructions, instructions[1:]))


def _is_model_import(instruction) -> bool:
    return instruction.opname == "IMPORT_NAME" and str(instruction.argval).startswith(MODEL_MODULES)
