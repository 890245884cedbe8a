"""The workflow's packaging_config, applied to each output folder once it is written."""

from __future__ import annotations

import logging
from pathlib import Path

from olivepress.share.config import PackagingConfig

log = logging.getLogger("olivepress")


def package_outputs(
    output_dirs: list[Path], packaging: PackagingConfig | list[PackagingConfig] | None
) -> list[Path]:
    """Write (and for MLflowModels register) a package archive in each output folder; returns the archives."""
    from olivepress.share.package import build_package
    from olivepress.share.registry import register

    configs = packaging if isinstance(packaging, list) else [packaging] if packaging else []
    archives = []
    for config in configs:
        for output_dir in output_dirs:
            # One flow keeps the configured name; several get the flow folder's name appended.
            name = config.name if len(output_dirs) == 1 else f"{config.name}-{output_dir.name}"
            archive = build_package(
                output_dir,
                output_dir / config.archive_name.replace(config.name, name, 1),
                name=name,
                version=str(config.version),
            )
            log.info("Packaged %s", archive)
            if config.type == "MLflowModels":
                found = register(
                    archive,
                    name,
                    None if config.version == "next" else config.version,
                    uri=config.registry_uri,
                )
                log.info("Registered %s in %s", found.uri, found.registry_uri)
            archives.append(archive)
    return archives
