"""Which storageUris a caller may use, checked before anything is fetched or even looked at.

A model file is code (a pickle runs as it loads) and a path names something on this machine, so
tenants may use local paths only under `root` and remote http(s) URIs only when they resolve to public
addresses; nobody may use the data dir (it holds the store and the JWT secret). The admin may name any
path but the data dir, and any URL the outbound guard lets through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from inferbox import storage
from inferbox.control.errors import InvalidField
from inferbox.control.outbound import OutboundRefused, check_url


@dataclass(frozen=True)
class StoragePolicy:
    root: Path
    data_dir: Path

    def check(self, uri: str, *, restricted: bool) -> None:
        """Refuse a URI the caller may not use (InvalidField); `restricted`: the caller is a tenant.
        Blocking (it may resolve a host name): call it in a worker thread."""
        if storage.is_local(uri):
            try:
                path = storage.local_path(uri).resolve()
            except storage.StorageError:
                return  # the config's own validation reports the shape problem
            if path.is_relative_to(self.data_dir.resolve()):
                raise InvalidField("Field 'storageUri': the data dir cannot hold models")
            # Checked before existence, so that the answer says nothing of paths outside the root.
            if restricted and not path.is_relative_to(self.root.resolve()):
                raise InvalidField(
                    f"Field 'storageUri': local paths must be under {self.root} (INFERBOX_MODEL_ROOT)"
                )
            return
        if restricted and urlsplit(uri).scheme in ("http", "https"):
            try:
                check_url(uri, public_only=True)
            except OutboundRefused as exc:
                raise InvalidField(f"Field 'storageUri': {exc}") from None

    @staticmethod
    def check_exists(uri: str) -> None:
        """The URI can be used here: a local path exists, a remote scheme's extra is installed."""
        try:
            storage.validate(uri)
        except storage.StorageError as exc:
            message = str(exc).removeprefix("storageUri").lstrip(":").strip()
            raise InvalidField(f"Field 'storageUri': {message}") from None
