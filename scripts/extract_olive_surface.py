"""Read Olive's config surface out of its source, once, into src/olivepress/workflow/olive_surface.json.

    python scripts/extract_olive_surface.py /work/.mirror/microsoft+Olive/repo [--commit HEAD]

The source is parsed (ast), never imported: Olive and its dependencies need not be installed.
What is read: the engine / run / system / accelerator / data config classes' fields, the
parameters of the registered data components, each pass's `_default_config` keys (following
`**helper()`, `config.update(helper())` and `super()._default_config(...)`), the pass names in
olive/olive_config.json, and the GraphSurgeries surgeons. olivepress's own table of how it
treats each of them lives in olivepress/workflow/olive_compat.py; docs/olive-compat.md is
generated from both by scripts/olive_compat_doc.py.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "olivepress" / "workflow" / "olive_surface.json"


class Source:
    def __init__(self, repo: Path, commit: str) -> None:
        self.repo, self.commit = repo, commit
        self._cache: dict[str, ast.Module] = {}

    def text(self, path: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.repo), "show", f"{self.commit}:{path}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def tree(self, path: str) -> ast.Module:
        if path not in self._cache:
            self._cache[path] = ast.parse(self.text(path))
        return self._cache[path]

    def files(self, under: str) -> list[str]:
        out = subprocess.run(
            ["git", "-C", str(self.repo), "ls-tree", "-r", "--name-only", self.commit, under],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [line for line in out.splitlines() if line.endswith(".py")]


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def class_fields(src: Source, path: str, name: str) -> list[str]:
    """Annotated fields of a (pydantic) class, with those of its bases defined in the same file."""
    classes = _classes(src.tree(path))
    fields: list[str] = []
    cls = classes[name]
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            fields += class_fields(src, path, base.id)
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            field = node.target.id
            if field.startswith("_") or field == "model_config" or "ClassVar" in ast.unparse(node.annotation):
                continue
            fields.append(field)
    return list(dict.fromkeys(fields))


def function_params(src: Source, path: str, name: str) -> list[str]:
    for node in ast.walk(src.tree(path)):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            args = [a.arg for a in node.args.args + node.args.kwonlyargs]
            return [a for a in args if a not in ("self", "cls", "dataset", "data_dir", "kwargs", "_dataset")]
    raise KeyError(f"{name} not in {path}")


def registered_components(src: Source, path: str) -> dict[str, list[str]]:
    """Each data component function registered in `path` (by its registry name) -> its parameters."""
    found = {}
    for node in src.tree(path).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        names = []
        for deco in node.decorator_list:
            if (
                isinstance(deco, ast.Call)
                and isinstance(deco.func, ast.Attribute)
                and deco.func.attr.startswith("register")
            ):
                if deco.args and isinstance(deco.args[0], ast.Constant):
                    names.append(deco.args[0].value)
                elif "default" not in deco.func.attr:
                    names.append(node.name)
        for registered in names:
            found[registered] = function_params(src, path, node.name)
    return found


# --- pass options -------------------------------------------------------------------------


class PassIndex:
    """Every class and module-level function under olive/passes and olive/common, by name."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.classes: dict[str, tuple[str, ast.ClassDef]] = {}
        self.functions: dict[str, ast.FunctionDef] = {}
        for path in src.files("olive/passes") + src.files("olive/common"):
            tree = src.tree(path)
            for node in tree.body:
                if isinstance(node, ast.ClassDef):
                    self.classes.setdefault(node.name, (path, node))
                elif isinstance(node, ast.FunctionDef):
                    self.functions.setdefault(node.name, node)

    def pass_options(self, class_name: str) -> list[str]:
        path, cls = self.classes[class_name]
        method = next(
            (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "_default_config"), None
        )
        if method is None:  # inherited
            for base in cls.bases:
                base_name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
                if base_name in self.classes and base_name != "Pass":
                    return self.pass_options(base_name)
            return []
        keys = self._keys_in(method, class_name)
        return list(dict.fromkeys(keys))

    def _keys_in(self, func: ast.FunctionDef, class_name: str | None = None, depth: int = 0) -> list[str]:
        keys: list[str] = []
        if depth > 4:
            return keys
        for node in ast.walk(func):
            if isinstance(node, ast.Dict):
                if self._is_options_dict(node):
                    for key, value in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            keys.append(key.value)
                        elif key is None:  # **helper() or **{...}
                            keys += self._keys_of_expr(value, class_name, depth)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "update"
            ):
                for arg in node.args:
                    keys += self._keys_of_expr(arg, class_name, depth)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    is_param = isinstance(node.value, ast.Call) and "PassConfigParam" in ast.unparse(
                        node.value.func
                    )
                    if (
                        is_param
                        and isinstance(target, ast.Subscript)
                        and isinstance(target.slice, ast.Constant)
                    ):
                        keys.append(target.slice.value)
                if isinstance(node.value, ast.Call):
                    keys += self._super_keys(node.value, class_name, depth)
            elif isinstance(node, ast.Return) and isinstance(node.value, ast.Call):
                keys += self._keys_of_expr(node.value, class_name, depth)
        return keys

    @staticmethod
    def _is_options_dict(node: ast.Dict) -> bool:
        # An options dict maps names to PassConfigParam(...) (or merges **helpers).
        values = [v for k, v in zip(node.keys, node.values, strict=True) if k is not None]
        return any(isinstance(v, ast.Call) and "PassConfigParam" in ast.unparse(v.func) for v in values) or (
            not values and any(k is None for k in node.keys)
        )

    def _super_keys(self, call: ast.Call, class_name: str | None, depth: int) -> list[str]:
        text = ast.unparse(call.func)
        if not text.endswith("_default_config") or class_name is None:
            return []
        _, cls = self.classes[class_name]
        for base in cls.bases:
            base_name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
            if base_name in self.classes and base_name != "Pass":
                return self.pass_options(base_name)
        owner = text.split(".")[0]
        return self.pass_options(owner) if owner in self.classes else []

    def _keys_of_expr(self, expr: ast.expr, class_name: str | None, depth: int) -> list[str]:
        if isinstance(expr, ast.Dict):
            return [k.value for k in expr.keys if isinstance(k, ast.Constant)] + [
                key
                for k, v in zip(expr.keys, expr.values, strict=True)
                if k is None
                for key in self._keys_of_expr(v, class_name, depth)
            ]
        if isinstance(expr, ast.IfExp):
            return self._keys_of_expr(expr.body, class_name, depth) + self._keys_of_expr(
                expr.orelse, class_name, depth
            )
        if isinstance(expr, ast.Call):
            super_keys = self._super_keys(expr, class_name, depth)
            if super_keys:
                return super_keys
            name = expr.func.id if isinstance(expr.func, ast.Name) else getattr(expr.func, "attr", None)
            if name in self.functions:
                return self._keys_in(self.functions[name], None, depth + 1)
        return []


def extract(src: Source) -> dict:
    olive_config = json.loads(src.text("olive/olive_config.json"))
    index = PassIndex(src)
    passes = {}
    for name, spec in sorted(olive_config["passes"].items()):
        class_name = spec["module_path"].rsplit(".", 1)[1]
        try:
            options = index.pass_options(class_name)
        except KeyError:
            options = []
        passes[name] = {"module": spec["module_path"], "options": options}
    surgeons = sorted(
        node.name
        for node in src.tree("olive/passes/onnx/graph_surgeries.py").body
        if isinstance(node, ast.ClassDef)
        and node.bases
        and ast.unparse(node.bases[0]).endswith("Surgeon")
        and node.name not in ("Surgeon", "ProtoSurgeon", "RewriteRuleSurgeon")
    )
    run_py = "olive/workflows/run/config.py"
    systems_py = "olive/systems/system_config.py"
    text_gen = "olive/data/component/text_generation.py"
    return {
        "olive_commit": subprocess.run(
            ["git", "-C", str(src.repo), "rev-parse", src.commit], check=True, capture_output=True, text=True
        ).stdout.strip(),
        "sections": {
            "run": class_fields(src, run_py, "RunConfig"),
            "engine": class_fields(src, "olive/engine/config.py", "EngineConfig")
            + [
                f
                for f in class_fields(src, run_py, "RunEngineConfig")
                if f not in class_fields(src, "olive/engine/config.py", "EngineConfig")
            ],
            "pass_entry": ["type", "config", *class_fields(src, "olive/engine/config.py", "RunPassConfig")],
            "system": class_fields(src, systems_py, "SystemConfig"),
            "system_config": sorted(
                {
                    *class_fields(src, systems_py, "LocalTargetUserConfig"),
                    *class_fields(src, systems_py, "DockerTargetUserConfig"),
                    *class_fields(src, systems_py, "PythonEnvironmentTargetUserConfig"),
                }
            ),
            "accelerator": class_fields(src, "olive/systems/common.py", "AcceleratorConfig"),
            "data_config": class_fields(src, "olive/data/config.py", "DataConfig"),
            "load_dataset": registered_components(src, "olive/data/component/load_dataset.py"),
            "pre_process_data": registered_components(src, "olive/data/component/pre_process_data.py"),
            "pre_process_text_generation": class_fields(src, text_gen, "TextGenParams"),
            "post_process_data": registered_components(src, "olive/data/component/post_process_data.py"),
            "dataloader": registered_components(src, "olive/data/component/dataloader.py"),
            "input_model_hf": function_params(src, "olive/model/handler/hf.py", "__init__"),
            "input_model_onnx": function_params(src, "olive/model/handler/onnx.py", "__init__"),
        },
        "passes": passes,
        "surgeons": surgeons,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="a git clone (or mirror) of microsoft/Olive")
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    surface = extract(Source(args.repo, args.commit))
    args.out.write_text(json.dumps(surface, indent=1, sort_keys=False) + "\n")
    print(f"{len(surface['passes'])} passes, {len(surface['surgeons'])} surgeons -> {args.out}")


if __name__ == "__main__":
    main()
