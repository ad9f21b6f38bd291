"""Import helpers shared by the framework loaders."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def import_without_sklearn(name: str) -> ModuleType:
    """Import ``name`` (xgboost, lightgbm) without letting it import scikit-learn.

    Both libraries import scikit-learn, when it is installed, only for their sklearn-style wrappers,
    which the server does not use; that import costs ~0.6 s of a replica's start-up. A ``None`` entry
    in ``sys.modules`` makes their guarded ``import sklearn`` fail cleanly. The entry is removed again
    so anything else can still import scikit-learn later.
    """
    if name in sys.modules or "sklearn" in sys.modules:
        return importlib.import_module(name)
    sys.modules["sklearn"] = None  # type: ignore[assignment]
    try:
        return importlib.import_module(name)
    finally:
        if sys.modules.get("sklearn", 0) is None:
            del sys.modules["sklearn"]
