"""Python a config names (custom metrics, data loaders, user scripts): run only when allowed.

A workflow config can come from anywhere; running the code it points to is the user's call,
made with --allow-user-code (or allow_user_code: true in the config), never olivepress's.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError, did_you_mean

FLAG = "--allow-user-code"


def require_permission(what: list[str], allowed: bool) -> None:
    """Refuse, before anything runs, a config that names user code without permission."""
    if what and not allowed:
        listed = ", ".join(what[:3]) + (f" and {len(what) - 3} more" if len(what) > 3 else "")
        raise OlivepressError(
            f"this config runs Python code ({listed}); olivepress runs user code only when you allow it: "
            f"pass {FLAG} (or set allow_user_code: true in the config) if you trust it"
        )


def load_function(script: str, name: str, base_dir: Path | None = None) -> Callable[..., Any]:
    path = Path(script).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise OlivepressError(
            f"user_script {path} does not exist; check the path (a relative path starts at the current "
            "folder)"
        )
    module_name = f"olivepress_user_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise OlivepressError(
                f"user_script {path} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        sys.modules[module_name] = module
    func = getattr(module, name, None)
    if not callable(func):
        names = [n for n in vars(module) if callable(getattr(module, n)) and not n.startswith("_")]
        raise OlivepressError(f"user_script {path} has no function '{name}'{did_you_mean(name, names)}")
    return func
