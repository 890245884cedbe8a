"""Model handles, resolving what a user names into a model folder, and fingerprints."""

from olivepress.models.handles import HfModel, ModelHandle, OnnxModel

__all__ = ["HfModel", "ModelHandle", "OnnxModel"]
