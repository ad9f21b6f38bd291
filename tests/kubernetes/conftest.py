"""The Kubernetes runtime's fixtures: one emulated API server (kmock, gaps filled in
benchmarks/kube_emulator.py) and one control plane with `INFERBOX_RUNTIME=kubernetes` per module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from k8s_helpers import Kserve, seed
from support import RunningServer, settings_for, start_server

from benchmarks.kube_emulator import EmulatorThread


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmulatorThread]:
    emulator = EmulatorThread().start()
    seed(emulator)
    yield emulator
    emulator.close()


@pytest.fixture(scope="module")
def k8s_factory(
    cluster: EmulatorThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RunningServer]]:
    servers: list[RunningServer] = []

    def make(**overrides: Any) -> RunningServer:
        tmp = tmp_path_factory.mktemp("k8s")
        settings = settings_for(
            tmp, runtime="kubernetes", kubeconfig=str(cluster.kubeconfig(tmp)), **overrides
        )
        server = start_server(settings)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def k8s(k8s_factory: Callable[..., RunningServer]) -> RunningServer:
    """A control plane on the Kubernetes runtime, against this module's emulator."""
    return k8s_factory()


@pytest.fixture(scope="module")
def kserve(cluster: EmulatorThread) -> Kserve:
    return Kserve(cluster)
