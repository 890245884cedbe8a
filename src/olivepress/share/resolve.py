"""What `serve` and `generate` accept as a model: a folder, a package archive, or models:/NAME/VERSION."""

from __future__ import annotations

import hashlib
from pathlib import Path

from olivepress.paths import olivepress_home


def local_model(spec: str, *, registry_uri: str | None = None) -> Path:
    """A local folder for `spec`; archives and registered models are unpacked once into the data folder."""
    from olivepress.share.package import is_archive, unpack_package

    if spec.startswith("models:/"):
        from olivepress.share.registry import pull, resolve_version

        found = resolve_version(spec, uri=registry_uri)
        # One folder per registry and run: a re-registered name never reuses a stale copy.
        key = hashlib.sha256(f"{found.registry_uri}|{found.run_id}".encode()).hexdigest()[:16]
        folder = olivepress_home() / "pulled" / f"{found.name}-{found.version}-{key}"
        if not folder.is_dir():
            pull(found.uri, folder, uri=found.registry_uri)
        return folder
    path = Path(spec).expanduser()
    if is_archive(path):
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        folder = olivepress_home() / "unpacked" / f"{path.name.split('.')[0]}-{key}"
        if not folder.is_dir():
            unpack_package(path, folder)
        return folder
    return path
