"""Package archives: an output folder as one versioned, self-describing file.

An archive is a tar (gzip-compressed when its name ends in .gz/.tgz) holding the output
folder as it is (``model/``, ``footprint.json``, ``adapter/``) plus ``manifest.json`` first:
what the model is (kind, precision, provider, adapters), the footprint's metrics, and the
SHA-256 of every file. Unpacking refuses members that would land outside the target folder,
links and devices, files the manifest does not list, and files whose hash does not match.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

from olivepress import __version__
from olivepress.errors import OlivepressError
from olivepress.paths import atomic_file, atomic_folder

MANIFEST = "manifest.json"
FORMAT = "olivepress-package"
FORMAT_VERSION = 1
ARCHIVE_SUFFIX = ".olivepress.tar"
_OUTPUT_MARKER = ".olivepress-output"  # engine/output.py's marker: not part of the model


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_archive(path: Path) -> bool:
    return path.is_file() and tarfile.is_tarfile(path)


def _model_folder(folder: Path) -> Path:
    return folder / "model" if (folder / "model").is_dir() else folder


def _packaged_files(folder: Path) -> list[Path]:
    """Files to pack, relative to `folder`: everything but archives made from it and the marker."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_symlink():
            raise OlivepressError(
                f"{path} is a symbolic link; package folders of plain files (copy the target in)"
            )
        if not path.is_file() or relative.name == _OUTPUT_MARKER:
            continue
        if len(relative.parts) == 1 and (
            relative.name.endswith(ARCHIVE_SUFFIX) or relative.name.endswith(ARCHIVE_SUFFIX + ".gz")
        ):
            continue
        files.append(relative)
    return files


def describe(folder: Path, extra_adapters: dict[str, str] | None = None) -> dict[str, Any]:
    """The manifest's description of the model in an output folder (without name, version, hashes)."""
    model = _model_folder(folder)
    footprint_file = folder / "footprint.json"
    footprint = json.loads(footprint_file.read_text()) if footprint_file.is_file() else {}
    genai_file = model / "genai_config.json"
    genai = json.loads(genai_file.read_text()) if genai_file.is_file() else None
    if genai is not None or any(model.glob("*.onnx")):
        kind = "onnx-genai" if genai is not None else "onnx"
    elif (model / "config.json").is_file():
        kind = "hf"
    else:
        raise OlivepressError(
            f"{folder} holds no model (no genai_config.json, .onnx file or config.json); package an "
            "olivepress output folder"
        )
    precision = None
    for node in footprint.get("nodes", []):
        precision = (node.get("config") or {}).get("precision") or precision
    adapters_file = model / "adapters.json"
    adapters = json.loads(adapters_file.read_text()) if adapters_file.is_file() else {}
    adapters.update(extra_adapters or {})
    metrics = {
        node["pass_name"]: node["metrics"] for node in footprint.get("nodes", []) if node.get("metrics")
    }
    if footprint.get("input_metrics"):
        metrics["input_model"] = footprint["input_metrics"]
    return {
        "model": {
            "kind": kind,
            "architecture": (genai or {}).get("model", {}).get("type"),
            "precision": precision,
            "provider": footprint.get("execution_provider", "CPUExecutionProvider"),
            "device": footprint.get("device", "cpu"),
            "context_length": (genai or {}).get("model", {}).get("context_length"),
        },
        "adapters": adapters,
        "metrics": metrics,
        "checks": footprint.get("checks", {}),
        "evaluations": footprint.get("evaluations", []),
        "input_model": footprint.get("input_model", {}).get("path"),
    }


def build_package(
    folder: str | Path,
    archive: str | Path | None = None,
    *,
    name: str | None = None,
    version: str = "1",
    adapters: dict[str, str | Path] | None = None,
) -> Path:
    """Pack `folder` (an olivepress output folder) into an archive; returns its path.

    `adapters` (name -> .onnx_adapter file) are packed beside the model and listed in its
    adapters.json, so whoever serves the archive gets them without further flags.
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise OlivepressError(
            f"{folder} is not a folder; package an olivepress output folder (what auto-opt or run wrote)"
        )
    name = name or folder.name
    _check_name(name, "name")
    _check_name(str(version), "version")
    archive = Path(archive) if archive else folder.parent / f"{name}-{version}{ARCHIVE_SUFFIX}"
    model = _model_folder(folder)
    model_prefix = model.relative_to(folder)
    extra: dict[str, Path] = {}
    for adapter, file in (adapters or {}).items():
        _check_name(adapter, "adapter name")
        file = Path(file).expanduser()
        if not file.is_file():
            raise OlivepressError(
                f"adapter file {file} does not exist; pass --adapter NAME=FILE with an .onnx_adapter"
            )
        extra[(model_prefix / f"{adapter}.onnx_adapter").as_posix()] = file
    registered = {adapter: f"{adapter}.onnx_adapter" for adapter in adapters or {}}
    files: dict[str, Path] = {relative.as_posix(): folder / relative for relative in _packaged_files(folder)}
    files.update(extra)
    generated: dict[str, bytes] = {}
    if registered:
        adapters_json = model / "adapters.json"
        known = json.loads(adapters_json.read_text()) if adapters_json.is_file() else {}
        generated[(model_prefix / "adapters.json").as_posix()] = json.dumps(
            {**known, **registered}, indent=2
        ).encode()
        files.pop((model_prefix / "adapters.json").as_posix(), None)
    hashes = {
        path: {"sha256": sha256_file(source), "size": source.stat().st_size} for path, source in files.items()
    }
    hashes.update(
        {
            path: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for path, data in generated.items()
        }
    )
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": str(version),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "olivepress_version": __version__,
        **describe(folder, registered),
        "files": dict(sorted(hashes.items())),
    }
    archive.parent.mkdir(parents=True, exist_ok=True)
    mode = "w:gz" if archive.name.endswith((".gz", ".tgz")) else "w"
    with (
        atomic_file(archive) as tmp,
        tarfile.open(tmp, mode, **({"compresslevel": 1} if mode == "w:gz" else {})) as tar,
    ):
        _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
        for path in sorted(set(files) | set(generated)):
            if path in generated:
                _add_bytes(tar, path, generated[path])
            else:
                tar.add(files[path], arcname=path, recursive=False, filter=_plain)
    return archive


def _check_name(value: str, what: str) -> None:
    if not value or "/" in value or "\\" in value or value in (".", "..") or value.strip() != value:
        raise OlivepressError(f"{what} '{value}' cannot name a file; use letters, digits, '-', '_' or '.'")


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Owners and permissions of the packer's machine mean nothing where the archive is unpacked.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info


def _add_bytes(tar: tarfile.TarFile, path: str, data: bytes) -> None:
    info = _plain(tarfile.TarInfo(path))
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def read_manifest(archive: str | Path) -> dict[str, Any]:
    archive = Path(archive)
    if not is_archive(archive):
        raise OlivepressError(f"{archive} is not a package archive; make one with olivepress package")
    with tarfile.open(archive) as tar:
        try:
            member = tar.getmember(MANIFEST)
        except KeyError:
            raise OlivepressError(
                f"{archive} has no {MANIFEST}; it was not made by olivepress package"
            ) from None
        manifest = json.loads(tar.extractfile(member).read())
    if manifest.get("format") != FORMAT:
        raise OlivepressError(f"{archive} is not an olivepress package (format {manifest.get('format')!r})")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise OlivepressError(
            f"{archive} is package format {manifest['format_version']}; this olivepress reads up to "
            f"{FORMAT_VERSION}: upgrade olivepress"
        )
    return manifest


def _member_path(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    """The member's path inside the target, or an error when it would leave the target."""
    path = PurePosixPath(member.name)
    if (
        path.is_absolute()
        or ".." in path.parts
        or member.name.startswith(("/", "\\"))
        or "\\" in member.name
        or ":" in path.parts[0]
    ):
        raise OlivepressError(
            f"{archive} holds '{member.name}', a path outside the folder it unpacks into; refusing to "
            "unpack it"
        )
    if not (member.isfile() or member.isdir()):
        raise OlivepressError(
            f"{archive} holds '{member.name}', a link or device; packages hold plain files only, "
            "refusing to unpack it"
        )
    return path


def unpack_package(archive: str | Path, target: str | Path) -> Path:
    """Unpack an archive into `target` (created; replaced only if olivepress wrote it); returns `target`."""
    archive = Path(archive).expanduser()
    target = Path(target).expanduser().resolve()
    manifest = read_manifest(archive)
    if target.is_file():
        raise OlivepressError(f"{target} is a file; unpack into a folder path")
    if target.is_dir() and any(target.iterdir()) and not (target / _OUTPUT_MARKER).exists():
        raise OlivepressError(f"{target} already holds files; unpack into an empty or new folder")
    listed = manifest.get("files", {})
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:  # every member is checked before anything is written
            path = _member_path(member, archive)
            if member.isfile() and member.name != MANIFEST and path.as_posix() not in listed:
                raise OlivepressError(
                    f"{archive} holds '{member.name}', which its manifest does not list; the archive "
                    "was altered"
                )
        with atomic_folder(target) as tmp:
            for member in members:
                if member.name == MANIFEST:
                    continue
                tar.extract(member, tmp, filter="data")
            for path, entry in listed.items():
                file = tmp / path
                if not file.is_file():
                    raise OlivepressError(
                        f"{archive} lacks {path}, which its manifest lists; the archive is incomplete"
                    )
                if sha256_file(file) != entry["sha256"]:
                    raise OlivepressError(
                        f"{path} in {archive} does not match its manifest hash; the archive is damaged "
                        "or altered"
                    )
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            (tmp / _OUTPUT_MARKER).write_text("written by olivepress; safe to replace on the next run\n")
    return target
