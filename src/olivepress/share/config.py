"""The workflow's `packaging_config`: what to do with the output once a workflow has written it.

Seed style (Olive): ``{"type": "Zipfile", "name": "OutputModels", "config": {...}}``, one or
a list. ``Zipfile`` (or ``Archive``) writes a package archive into the output folder;
``MLflowModels`` also registers it in an MLflow Model Registry (the local one by default).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from olivepress.errors import OlivepressError

_AZURE_TYPES = ("AzureMLModels", "AzureMLData", "AzureMLDeployment", "Dockerfile")


class PackagingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    type: Literal["Zipfile", "Archive", "MLflowModels"] = Field(
        "Zipfile",
        description=(
            "Zipfile/Archive: a package archive in the output folder; MLflowModels: that, registered too."
        ),
    )
    name: str = Field(
        "OutputModels", description="Package name (and registered model name for MLflowModels)."
    )
    version: str | int = Field(
        "1", description="Package version; for MLflowModels the next registry version, or 'next'."
    )
    registry_uri: str | None = Field(
        None, description="MLflow registry for MLflowModels (default: the local olivepress registry)."
    )
    compress: bool = Field(False, description="gzip the archive (model weights rarely shrink much).")
    # Olive's Zipfile options: accepted so seed configs load; the archive always holds the model only.
    export_in_mlflow_format: bool = Field(False, description="Accepted for Olive configs; no effect.")
    include_runtime_packages: bool = Field(False, description="Accepted for Olive configs; no effect.")
    include_sample_code: bool = Field(False, description="Accepted for Olive configs; no effect.")

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        kind = value.get("type")
        if kind in _AZURE_TYPES:
            raise OlivepressError(
                f"packaging_config type '{kind}' targets Azure ML; olivepress packages with Zipfile "
                "(an archive) "
                "or MLflowModels (an MLflow registry, local or --registry_uri)"
            )
        inner = value.get("config")
        if isinstance(inner, dict):
            value = {**{k: v for k, v in value.items() if k != "config"}, **inner}
        if "version" in value:
            value = {**value, "version": str(value["version"])}
        return value

    @property
    def archive_name(self) -> str:
        suffix = ".olivepress.tar.gz" if self.compress else ".olivepress.tar"
        return f"{self.name}-{self.version}{suffix}"
