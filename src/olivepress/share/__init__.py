"""Sharing models: package archives (package.py) and an MLflow model registry (registry.py)."""
