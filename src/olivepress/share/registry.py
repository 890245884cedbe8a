"""A model registry on MLflow: register a package, pull it back by ``models:/NAME/VERSION``.

The default registry is local: a SQLite store and an artifact folder under the olivepress
data folder, no server. ``registry_uri`` (or env OLIVEPRESS_REGISTRY_URI) names any MLflow
tracking server instead. A version's artifact is the package archive itself, so what comes
back is checked file by file against the manifest; the footprint's metrics and the manifest's
description go along as tags, and the manifest as a run artifact.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError
from olivepress.paths import olivepress_home
from olivepress.share.package import build_package, is_archive, read_manifest, unpack_package

EXPERIMENT = "olivepress-registry"
ARTIFACT_DIR = "package"
_MODELS_URI = re.compile(r"^models:/([^/]+)/([^/]+)/?$")


@dataclass
class RegisteredVersion:
    name: str
    version: str
    registry_uri: str
    run_id: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def local_registry_uri() -> str:
    return f"sqlite:///{olivepress_home() / 'registry' / 'mlflow.db'}"


def registry_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("OLIVEPRESS_REGISTRY_URI") or local_registry_uri()


def _client(uri: str):
    # MLflow is quiet unless something is wrong; its progress bars and migration notes are noise here.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    # After the import: importing mlflow sets its own logger to INFO.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    except Exception as exc:
        raise OlivepressError(f"cannot open the MLflow registry at {uri}: {exc}") from exc


def _experiment_id(client, uri: str) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # a local registry keeps its artifacts beside its database
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def _versions(client, name: str) -> list[int]:
    return sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))


def _tags(manifest: dict[str, Any]) -> dict[str, str]:
    model = manifest["model"]
    tags = {
        "olivepress.package_format": str(manifest["format_version"]),
        "olivepress.version": manifest.get("olivepress_version", ""),
        "model_kind": str(model.get("kind")),
        "architecture": str(model.get("architecture")),
        "precision": str(model.get("precision")),
        "provider": str(model.get("provider")),
        "adapters": ",".join(manifest.get("adapters", {})),
        "files": str(len(manifest.get("files", {}))),
    }
    for pass_name, metrics in manifest.get("metrics", {}).items():
        for metric, value in _flat(metrics):
            tags[f"metric.{pass_name}.{metric}"] = str(value)[:5000]
    return tags


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            items.extend(_flat(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def register(
    path: str | Path,
    name: str,
    version: str | int | None = None,
    *,
    uri: str | None = None,
    description: str | None = None,
) -> RegisteredVersion:
    """Register an output folder (packaged on the way) or a package archive as a new version of `name`.

    MLflow numbers versions itself (1, 2, …); a `version` that is not the next number is refused
    rather than silently renumbered.
    """
    uri = registry_uri(uri)
    path = Path(path).expanduser()
    if not path.exists():
        raise OlivepressError(
            f"{path} does not exist; register an olivepress output folder or a package archive"
        )
    client = _client(uri)
    existing = _versions(client, name) if client.search_registered_models(f"name='{name}'") else []
    next_version = (existing[-1] + 1) if existing else 1
    if version is not None and str(version) != str(next_version):
        taken = f"versions {existing[0]}..{existing[-1]} exist" if existing else "it has no versions yet"
        raise OlivepressError(
            f"{name} cannot take version {version}: the registry numbers versions in order and {taken}; "
            f"use --version {next_version} (or leave --version out)"
        )
    with tempfile.TemporaryDirectory(prefix="olivepress-register-") as scratch:
        archive = (
            path
            if is_archive(path)
            else build_package(
                path,
                Path(scratch) / f"{name}-{next_version}.olivepress.tar",
                name=name,
                version=str(next_version),
            )
        )
        manifest = read_manifest(archive)
        tags = _tags(manifest)
        experiment = _experiment_id(client, uri)
        run = client.create_run(
            experiment, run_name=f"{name}-v{next_version}", tags={"olivepress.registered_model": name}
        )
        run_id = run.info.run_id
        for metric, value in _numeric_metrics(manifest):
            client.log_metric(run_id, metric, value)
        client.log_artifact(run_id, str(archive), ARTIFACT_DIR)
        client.log_dict(run_id, manifest, "manifest.json")
        client.set_terminated(run_id)
    if not existing:
        client.create_registered_model(name, description=f"olivepress model ({manifest['model']['kind']})")
    created = client.create_model_version(
        name,
        f"runs:/{run_id}/{ARTIFACT_DIR}",
        run_id=run_id,
        tags=tags,
        description=description or _summary(manifest),
    )
    return RegisteredVersion(
        name=name, version=str(created.version), registry_uri=uri, run_id=run_id, tags=tags
    )


def _numeric_metrics(manifest: dict[str, Any]) -> list[tuple[str, float]]:
    metrics = []
    for pass_name, values in manifest.get("metrics", {}).items():
        for metric, value in _flat(values):
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics.append((re.sub(r"[^\w./ -]", "_", f"{pass_name}.{metric}"), float(value)))
    return metrics


def _summary(manifest: dict[str, Any]) -> str:
    model = manifest["model"]
    adapters = ", ".join(manifest.get("adapters", {})) or "none"
    return (
        f"{model.get('architecture') or model['kind']} {model.get('precision') or ''} for "
        f"{model.get('provider')}; "
        f"adapters: {adapters}"
    )


def parse_models_uri(spec: str) -> tuple[str, str]:
    match = _MODELS_URI.match(spec)
    if not match:
        raise OlivepressError(
            f"'{spec}' is not a registry name; write models:/NAME/VERSION (e.g. models:/ft-for-travel/1)"
        )
    return match.group(1), match.group(2)


def resolve_version(spec: str, *, uri: str | None = None) -> RegisteredVersion:
    """The registered version `spec` (models:/NAME/VERSION, VERSION may be 'latest') names."""
    name, version = parse_models_uri(spec)
    uri = registry_uri(uri)
    client = _client(uri)
    if not client.search_registered_models(f"name='{name}'"):
        known = [model.name for model in client.search_registered_models()]
        from olivepress.errors import did_you_mean

        listed = ", ".join(known[:10]) or "none"
        raise OlivepressError(
            f"no model named '{name}' in the registry at {uri}{did_you_mean(name, known)} (registered: "
            f"{listed})"
        )
    versions = _versions(client, name)
    if version == "latest":
        version = str(versions[-1])
    if not version.isdigit() or int(version) not in versions:
        raise OlivepressError(
            f"{name} has no version {version} (versions: {', '.join(map(str, versions))}); "
            f"pull one of those or models:/{name}/latest"
        )
    found = client.get_model_version(name, version)
    return RegisteredVersion(
        name=name, version=version, registry_uri=uri, run_id=found.run_id, tags=dict(found.tags)
    )


def pull(spec: str, output_dir: str | Path, *, uri: str | None = None) -> Path:
    """Download a registered version's package and unpack it into `output_dir`.

    The package is checked against its manifest.
    """
    found = resolve_version(spec, uri=uri)
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="olivepress-pull-") as scratch:
        try:
            folder = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=found.run_id,
                    artifact_path=ARTIFACT_DIR,
                    dst_path=scratch,
                    tracking_uri=found.registry_uri,
                )
            )
        except Exception as exc:
            raise OlivepressError(f"cannot download {found.uri} from {found.registry_uri}: {exc}") from exc
        archives = [file for file in folder.iterdir() if is_archive(file)]
        if len(archives) != 1:
            raise OlivepressError(
                f"{found.uri} holds no single package archive; register it again with olivepress register"
            )
        return unpack_package(archives[0], output_dir)
