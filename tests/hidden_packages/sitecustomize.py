"""Test-only: makes this interpreter see some installed packages as not installed.

The test extra installs torch and transformers, so "a pytorch model on an install without the extra"
can only be seen in a process that cannot find them. `tests/hiding.py` starts such processes with this
directory first on PYTHONPATH and the packages named in INFERBOX_TEST_HIDDEN_PACKAGES (comma-separated
names that are both the top-level module and the distribution, e.g. ``torch,transformers``); Python
imports this module at startup (the `site` module's sitecustomize hook).

The path-based finder on ``sys.meta_path`` is swapped for a subclass that finds neither the hidden
modules nor their distributions, so ``import torch`` raises ModuleNotFoundError,
``importlib.util.find_spec("torch")`` is None and ``importlib.metadata.version("torch")`` raises
PackageNotFoundError: what a clean install without the extra shows. Nothing is put in ``sys.modules``
(a None entry there would differ: code probing ``"torch" in sys.modules`` would then try to import it).
Child processes inherit the environment, so the replicas a control plane starts are blind too.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from importlib.machinery import ModuleSpec, PathFinder
from importlib.metadata import DistributionFinder, PathDistribution
from types import ModuleType

HIDDEN = frozenset(
    name.strip() for name in os.environ.get("INFERBOX_TEST_HIDDEN_PACKAGES", "").split(",") if name.strip()
)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_HIDDEN_DISTRIBUTIONS = frozenset(_canonical(name) for name in HIDDEN)


class HidingPathFinder(PathFinder):
    """The standard path finder, minus the hidden packages."""

    @classmethod
    def find_spec(
        cls, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] in HIDDEN:
            return None
        return super().find_spec(fullname, path, target)

    @classmethod
    def find_distributions(
        cls, context: DistributionFinder.Context = DistributionFinder.Context()
    ) -> Iterable[PathDistribution]:
        if context.name is not None and _canonical(context.name) in _HIDDEN_DISTRIBUTIONS:
            return iter(())
        found = super().find_distributions(context)
        return (d for d in found if _canonical(d.metadata["Name"] or "") not in _HIDDEN_DISTRIBUTIONS)


if HIDDEN:
    sys.meta_path[:] = [HidingPathFinder if f is PathFinder else f for f in sys.meta_path]
