"""The frameworks a replica can serve, how their model files are found, and how they are loaded.

Importing this module is cheap: each framework's module (and its library) is imported only when that
framework's model is loaded, so a replica pays the import time of its own framework only.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inferbox.server.errors import ModelLoadError, one_line
from inferbox.server.model import Model


@dataclass(frozen=True, slots=True)
class Framework:
    """What the server knows about a framework before importing anything of it.

    ``extensions`` are the model file suffixes looked for in a model directory (as KServe's model
    servers do); ``marker`` instead names a file whose directory is the model (Hugging Face).
    ``modules`` are the importable packages the framework needs, and ``extra`` the inferbox extra that
    installs them, when they are optional.
    """

    name: str
    extensions: tuple[str, ...]
    modules: tuple[str, ...]
    extra: str | None = None
    marker: str | None = None


FRAMEWORKS: dict[str, Framework] = {
    f.name: f
    for f in (
        Framework("sklearn", (".joblib", ".pkl", ".pickle"), ("sklearn", "joblib")),
        Framework("xgboost", (".json", ".ubj", ".bst"), ("xgboost",)),
        Framework("lightgbm", (".txt", ".lgb"), ("lightgbm",)),
        Framework("onnx", (".onnx",), ("onnxruntime",)),
        Framework("pytorch", (".pt", ".pth"), ("torch",), extra="pytorch"),
        Framework("huggingface", (), ("transformers", "torch"), extra="huggingface", marker="config.json"),
    )
}


def get_framework(name: str) -> Framework:
    """The framework called ``name``; an unknown name is a load failure (exit code 3)."""
    framework = FRAMEWORKS.get(name)
    if framework is None:
        raise ModelLoadError(f"unknown framework {name!r} (known: {', '.join(FRAMEWORKS)})")
    return framework


def missing_extra(framework: str) -> str | None:
    """A message saying what to install when ``framework``'s packages are missing, else ``None``.

    Uses ``importlib.util.find_spec`` so nothing heavy is imported to find out.
    """
    spec = get_framework(framework)
    missing = [module for module in spec.modules if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    if spec.extra is not None:
        return f"framework {framework!r} needs the optional extra: pip install 'inferbox[{spec.extra}]'"
    return f"framework {framework!r} needs the package(s) {', '.join(missing)}, which are not installed"


def find_model_file(framework: str, path: Path) -> Path:
    """The one model file (or, for Hugging Face, model directory) under ``path``.

    ``path`` may name the model file itself. For a directory, the top level is searched first and, only
    if it holds no candidate, its subdirectories (hidden ones skipped). Zero or several candidates is
    an error, as in KServe's model servers: guessing which of two models to serve would be worse.
    """
    spec = get_framework(framework)
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist")
    if path.is_file():
        if spec.marker is not None:
            return _marker_dir(spec, path.parent) if path.name == spec.marker else _not_model(spec, path)
        if path.name.lower().endswith(spec.extensions):
            return path
        return _not_model(spec, path)
    if spec.marker is not None:
        return _marker_dir(spec, path)
    candidates = _candidates(path, lambda p: p.is_file() and p.name.lower().endswith(spec.extensions))
    return _exactly_one(spec, path, candidates)


def _marker_dir(spec: Framework, path: Path) -> Path:
    assert spec.marker is not None
    if (path / spec.marker).is_file():
        return path
    found = _candidates(path, lambda p: p.is_file() and p.name == spec.marker)
    return _exactly_one(spec, path, found).parent


def _candidates(root: Path, accept: Callable[[Path], bool]) -> list[Path]:
    top = sorted(p for p in root.iterdir() if not p.name.startswith(".") and accept(p))
    if top:
        return top
    nested = [
        p
        for p in root.rglob("*")
        if not any(part.startswith(".") for part in p.relative_to(root).parts) and accept(p)
    ]
    return sorted(nested)


def _exactly_one(spec: Framework, root: Path, candidates: list[Path]) -> Path:
    wanted = f"a {spec.marker}" if spec.marker else f"a {'/'.join(spec.extensions)} file"
    if not candidates:
        raise ModelLoadError(f"no model file for framework {spec.name!r} in {root} (expected {wanted})")
    if len(candidates) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in candidates)
        raise ModelLoadError(f"more than one model file for framework {spec.name!r} in {root}: {names}")
    return candidates[0]


def _not_model(spec: Framework, path: Path) -> Path:
    wanted = spec.marker if spec.marker else "/".join(spec.extensions)
    raise ModelLoadError(f"{path} is not a model file for framework {spec.name!r} (expected {wanted})")


def load_model(framework: str, path: Path, *, task: str | None = None) -> Model:
    """Import ``framework``'s loader and load the model at ``path`` (a path from :func:`find_model_file`).

    Every failure, whatever the framework raises, becomes a :class:`ModelLoadError` with a one-line
    message.
    """
    message = missing_extra(framework)
    if message is not None:
        raise ModelLoadError(message)
    module = importlib.import_module(f"inferbox.server.frameworks.{framework}")
    try:
        loaded: Model = module.load(path, task=task)
        return loaded
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load {path}: {one_line(exc)}") from exc
