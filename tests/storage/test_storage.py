"""storageUri → local path: local paths in place, remote schemes through the optional extra."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from inferbox import storage
from inferbox.storage import StorageError, download_dir, fetch, fetch_async, validate


def test_absolute_paths_and_file_uris_to_files_and_directories(tmp_path: Path) -> None:
    model = tmp_path / "model.joblib"
    model.write_bytes(b"x")
    for uri in (
        str(tmp_path),
        str(model),
        f"file://{tmp_path}",
        f"file://{model}",
        f"file://localhost{model}",
    ):
        validate(uri)
    assert fetch(str(model), tmp_path / "unused") == model
    assert fetch(f"file://{tmp_path}", tmp_path / "unused") == tmp_path
    # Served in place: nothing was copied.
    assert not (tmp_path / "unused").exists()


def test_percent_encoded_file_uri(tmp_path: Path) -> None:
    spaced = tmp_path / "my model"
    spaced.mkdir()
    assert fetch(f"file://{tmp_path}/my%20model", tmp_path / "unused") == spaced


def test_missing_path_is_named() -> None:
    with pytest.raises(StorageError) as info:
        validate("/x/does/not/exist")
    assert str(info.value) == "storageUri: path /x/does/not/exist does not exist"
    with pytest.raises(StorageError, match="path /nope does not exist"):
        validate("file:///nope")


@pytest.mark.parametrize("uri", ["models/iris", "./model.joblib", "model.joblib"])
def test_relative_paths_are_refused(uri: str) -> None:
    with pytest.raises(StorageError, match="storageUri"):
        validate(uri)


def test_file_uri_with_a_host_is_refused() -> None:
    with pytest.raises(StorageError, match="must not name a host"):
        validate("file://server/models/iris")


def test_empty_is_refused() -> None:
    with pytest.raises(StorageError, match="must not be empty"):
        validate("")


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("s3://bucket/models/iris", "s3"),
        ("gs://bucket/iris", "gs"),
        ("https://example.com/model.tar.gz", "https"),
        ("http://example.com/model.joblib", "http"),
        ("hf://org/model", "hf"),
        ("S3://bucket/iris", "s3"),
    ],
)
def test_remote_schemes_need_the_optional_extra(uri: str, scheme: str, tmp_path: Path) -> None:
    # kserve-storage is not installed in the test environment: the message must say how to get it.
    message = f"storageUri scheme '{scheme}' needs the optional extra: pip install 'inferbox[storage]'"
    with pytest.raises(StorageError) as info:
        validate(uri)
    assert str(info.value) == message
    with pytest.raises(StorageError):
        fetch(uri, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_unknown_and_misplaced_schemes() -> None:
    with pytest.raises(StorageError, match="scheme 'ftp' is not supported"):
        validate("ftp://host/model")
    with pytest.raises(StorageError, match="pvc:// volumes exist only on Kubernetes"):
        validate("pvc://claim/models/iris")
    with pytest.raises(StorageError, match=r"blob\.core\.windows\.net"):
        validate("abfs://container@account.dfs.core.windows.net/iris")


def test_storage_error_is_a_value_error() -> None:
    # The runtime's apply() raises ValueError for specs it cannot run; storage errors are among them.
    assert issubclass(StorageError, ValueError)


def test_download_dir_layout(tmp_path: Path) -> None:
    assert download_dir(tmp_path, "tenant-a", "iris", 3) == tmp_path / "models" / "tenant-a" / "iris" / "3"


def test_fetch_async_runs_off_the_loop(tmp_path: Path) -> None:
    assert asyncio.run(fetch_async(str(tmp_path), tmp_path / "x")) == tmp_path
    assert storage.is_local(str(tmp_path))
    assert not storage.is_local("s3://b/k")
