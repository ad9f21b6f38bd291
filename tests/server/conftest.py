"""Fixtures for the model-server tests: real models trained on iris, and real replicas serving them.

Models are trained once per session into temporary directories; each framework's replica is started
once per session and must stop cleanly (exit 0 on SIGTERM) at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_helpers import ServerProcess, running_server


@pytest.fixture(scope="session")
def sklearn_server(sklearn_dir: Path) -> Iterator[ServerProcess]:
    with running_server("sklearn", sklearn_dir) as server:
        yield server


@pytest.fixture(scope="session")
def xgboost_server(xgboost_dir: Path) -> Iterator[ServerProcess]:
    with running_server("xgboost", xgboost_dir) as server:
        yield server


@pytest.fixture(scope="session")
def lightgbm_server(lightgbm_dir: Path) -> Iterator[ServerProcess]:
    with running_server("lightgbm", lightgbm_dir) as server:
        yield server


@pytest.fixture(scope="session")
def onnx_server(onnx_dir: Path) -> Iterator[ServerProcess]:
    with running_server("onnx", onnx_dir) as server:
        yield server


@pytest.fixture(scope="session")
def small_batch_server(sklearn_dir: Path) -> Iterator[ServerProcess]:
    """A replica of its own for the batching, metrics and stats tests, whose counts must see only
    their own traffic (tests run one at a time, so deltas are exact)."""
    with running_server(
        "sklearn", sklearn_dir, "--max-batch-size", "8", "--max-batch-wait-ms", "5"
    ) as server:
        yield server
