"""storageUri → a local path the model server can load.

Local paths (`file:///abs/path` or `/abs/path`) are used where they are, without a copy. Remote schemes
mean what they mean in KServe and are downloaded by the `kserve-storage` package, an optional extra
(`pip install 'inferbox[storage]'`), so that a plain install stays small.

Two calls: `validate(uri)` is cheap and runs at create time (the API turns a `StorageError` into a 400);
`fetch(uri, dest_dir)` runs when a replica is about to start (blocking: call it in a thread, or use
`fetch_async`).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

from inferbox.blocking import in_thread

__all__ = [
    "REMOTE_SCHEMES",
    "StorageError",
    "download_dir",
    "fetch",
    "fetch_async",
    "is_local",
    "validate",
]

# Schemes that kserve-storage downloads (Azure Blob and File shares are https:// URLs there).
REMOTE_SCHEMES = frozenset({"s3", "gs", "http", "https", "hf", "hdfs", "webhdfs"})
# Schemes that only make sense somewhere else, with the reason given to the user.
_UNSUPPORTED = {
    "pvc": "pvc:// volumes exist only on Kubernetes; use the kubernetes runtime, or a local path",
    "azure": "use the https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH form, as in KServe",
    "abfs": "use the https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH form, as in KServe",
    "abfss": "use the https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH form, as in KServe",
}
_EXTRA_MODULE = "kserve_storage"


class StorageError(ValueError):
    """A storageUri that cannot be used here; the message is meant for the user."""


def _scheme(uri: str) -> str:
    if uri.startswith("/"):
        return ""
    return urlsplit(uri).scheme.lower()


def is_local(uri: str) -> bool:
    """True for `file://` URIs and plain absolute paths (served in place, never copied)."""
    return _scheme(uri) in ("", "file")


def local_path(uri: str) -> Path:
    """The filesystem path a local storageUri names, checked for shape (not for existence)."""
    if not uri:
        raise StorageError("storageUri: must not be empty")
    scheme = _scheme(uri)
    if scheme == "":
        if not uri.startswith("/"):
            raise StorageError(f"storageUri: path {uri} must be absolute (or a URI such as s3://...)")
        return Path(uri)
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise StorageError(
            f"storageUri: file:// URI must not name a host ({parts.netloc}); use file:///abs/path"
        )
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise StorageError(f"storageUri: path {path or '(empty)'} must be absolute")
    return Path(path)


def _check_extra(scheme: str) -> None:
    if importlib.util.find_spec(_EXTRA_MODULE) is None:
        raise StorageError(
            f"storageUri scheme '{scheme}' needs the optional extra: pip install 'inferbox[storage]'"
        )


def validate(uri: str) -> None:
    """Check a storageUri without fetching anything: the scheme is known, a local path exists, and the
    optional extra is installed for remote schemes. Raises `StorageError` with a user-facing message."""
    if not isinstance(uri, str) or not uri.strip():
        raise StorageError("storageUri: must not be empty")
    scheme = _scheme(uri)
    if scheme in ("", "file"):
        path = local_path(uri)
        if not path.exists():
            raise StorageError(f"storageUri: path {path} does not exist")
        return
    if scheme in _UNSUPPORTED:
        raise StorageError(
            f"storageUri scheme '{scheme}' is not supported by the local runtime: {_UNSUPPORTED[scheme]}"
        )
    if scheme not in REMOTE_SCHEMES:
        if not scheme:
            raise StorageError(f"storageUri: {uri} is neither an absolute path nor a URI")
        known = ", ".join(sorted({"file", *REMOTE_SCHEMES}))
        raise StorageError(f"storageUri scheme '{scheme}' is not supported; known schemes: {known}")
    _check_extra(scheme)


def download_dir(data_dir: Path, namespace: str, name: str, generation: int) -> Path:
    """Where a remote model of one generation is downloaded: `{data_dir}/models/{ns}/{name}/{generation}`."""
    return Path(data_dir) / "models" / namespace / name / str(generation)


def fetch(uri: str, dest_dir: Path) -> Path:
    """Make the model at `uri` available locally and return its path.

    A local path is returned as is (no copy). A remote URI is downloaded into `dest_dir` (emptied first,
    so a half-finished earlier download never mixes with this one). Blocking: run it off the event loop.
    """
    validate(uri)
    if is_local(uri):
        return local_path(uri)
    dest = Path(dest_dir)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    from kserve_storage import Storage  # optional extra, checked by validate()

    try:
        out = Storage.download(uri, out_dir=str(dest))
    except Exception as exc:  # kserve-storage raises bare Exceptions for every kind of failure
        raise StorageError(f"storageUri: download of {uri} failed: {exc}") from exc
    return Path(out or dest)


async def fetch_async(uri: str, dest_dir: Path) -> Path:
    """`fetch` in a worker thread, so a download never blocks the control plane's event loop."""
    return await in_thread(fetch, uri, dest_dir)
