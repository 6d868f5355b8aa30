"""Taichi's own mpm88/mpm128 examples, loaded from the installed wheel as a speed reference.

The example scripts open a window at module level, so we keep only their imports, constants, fields and
kernels (dropping `ti.init`, the GUI and the main loop) and import that subset as a module in this process.
Nothing of their code lives in this repository.
"""

import ast
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import taichi as ti


def example_path(name: str) -> Path:
    return Path(ti.__file__).parent / "examples" / "simulation" / f"{name}.py"


def _keep(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        text = ast.unparse(node)
        return "GUI" not in text and "gui" not in text
    return False


def load_example(name: str) -> ModuleType:
    """Import the fields and kernels of taichi/examples/simulation/<name>.py (Taichi must be initialised)."""
    path = example_path(name)
    tree = ast.parse(path.read_text())
    tree.body = [node for node in tree.body if _keep(node)]
    # Taichi reads kernel source through inspect, so the subset must exist as a real file.
    folder = Path(tempfile.mkdtemp(prefix="sluice_baseline_"))
    module_file = folder / f"taichi_example_{name}.py"
    module_file.write_text(ast.unparse(tree) + "\n")
    spec = importlib.util.spec_from_file_location(module_file.stem, module_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_file.stem] = module
    spec.loader.exec_module(module)
    return module
