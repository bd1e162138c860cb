"""Import a script of ``studies/`` (a folder of scripts, not a package) for its tests."""

import importlib.util
from pathlib import Path
from types import ModuleType

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def load_script(name: str) -> ModuleType:
    """``studies/NAME.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, STUDIES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
