"""Package archives and the MLflow registry: round trips, and archives that must not unpack."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from olivepress.errors import OlivepressError
from olivepress.runtime.generate import GenAIModel, SearchOptions
from olivepress.share.package import build_package, read_manifest, sha256_file, unpack_package
from test_cli import assert_one_line_error, olivepress


@pytest.fixture(scope="module")
def archive(tiny_genai_build, second_adapter_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "tiny-2.olivepress.tar"
    return build_package(
        tiny_genai_build, out, name="tiny", version="2", adapters={"second": second_adapter_file}
    )


@pytest.fixture
def registry(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("OLIVEPRESS_HOME", str(tmp_path / "home"))  # the default registry lives here
    return f"sqlite:///{tmp_path / 'home' / 'registry' / 'mlflow.db'}"


def test_manifest_describes_the_model(archive, tiny_genai_build):
    manifest = read_manifest(archive)
    assert (manifest["name"], manifest["version"], manifest["format_version"]) == ("tiny", "2", 1)
    model = manifest["model"]
    assert (model["kind"], model["precision"], model["provider"], model["architecture"]) == (
        "onnx-genai",
        "fp32",
        "CPUExecutionProvider",
        "llama",
    )
    assert manifest["adapters"] == {
        "default": "adapter_weights.onnx_adapter",
        "second": "second.onnx_adapter",
    }
    assert manifest["files"]["model/model.onnx"]["sha256"] == sha256_file(
        tiny_genai_build / "model" / "model.onnx"
    )
    assert "footprint.json" in manifest["files"] and ".olivepress-output" not in manifest["files"]


def test_unpacked_archive_serves_both_adapters_like_the_folder(
    archive, tiny_genai_build, second_adapter_file, tmp_path
):
    folder = unpack_package(archive, tmp_path / "unpacked")
    original = GenAIModel(tiny_genai_build, adapters={"second": second_adapter_file})
    unpacked = GenAIModel(folder)
    assert unpacked.adapter_names == ["default", "second"]
    for adapter in ("base", "default", "second"):
        options = SearchOptions(max_new_tokens=8)
        assert (
            unpacked.generate("Paris", options, adapter=adapter).text
            == original.generate("Paris", options, adapter=adapter).text
        )
    (folder / "model" / "model.onnx").unlink()
    unpack_package(archive, folder)  # olivepress's own folder: replaced whole
    assert (folder / "model" / "model.onnx").is_file()


def _tamper(archive: Path, out: Path, add: tarfile.TarInfo, data: bytes = b"", list_it: bool = True) -> Path:
    """A copy of `archive` with one more member (listed in the manifest when `list_it`)."""
    with tarfile.open(archive) as source, tarfile.open(out, "w") as tar:
        for member in source.getmembers():
            payload = source.extractfile(member).read() if member.isfile() else None
            if member.name == "manifest.json" and list_it:
                manifest = json.loads(payload)
                manifest["files"][add.name] = {"sha256": "0" * 64, "size": len(data)}
                payload = json.dumps(manifest).encode()
                member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload) if payload is not None else None)
        add.size = len(data) if add.isfile() else 0
        tar.addfile(add, io.BytesIO(data) if add.isfile() else None)
    return out


@pytest.mark.parametrize(
    ("name", "kind", "pattern"),
    [
        ("../escaped.txt", tarfile.REGTYPE, "outside the folder"),
        ("model/../../escaped.txt", tarfile.REGTYPE, "outside the folder"),
        ("/tmp/escaped.txt", tarfile.REGTYPE, "outside the folder"),
        ("model/link", tarfile.SYMTYPE, "link or device"),
        ("model/hard", tarfile.LNKTYPE, "link or device"),
    ],
)
def test_archives_that_would_write_outside_the_target_are_refused(archive, tmp_path, name, kind, pattern):
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = "/etc/passwd" if kind != tarfile.REGTYPE else ""
    bad = _tamper(archive, tmp_path / "bad.tar", member, b"gotcha")
    target = tmp_path / "deep" / "target"
    with pytest.raises(OlivepressError, match=pattern):
        unpack_package(bad, target)
    assert (
        not target.exists()
        and not (tmp_path / "deep" / "escaped.txt").exists()
        and not (tmp_path / "escaped.txt").exists()
    )


def test_altered_and_unlisted_files_are_refused(archive, tmp_path):
    extra = tarfile.TarInfo("model/extra.bin")
    with pytest.raises(OlivepressError, match="does not list"):
        unpack_package(
            _tamper(archive, tmp_path / "unlisted.tar", extra, b"x", list_it=False), tmp_path / "a"
        )
    with pytest.raises(OlivepressError, match="does not match its manifest hash"):
        unpack_package(_tamper(archive, tmp_path / "altered.tar", extra, b"x"), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unpack_does_not_clobber_user_files(archive, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OlivepressError, match="already holds files"):
        unpack_package(archive, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_package_cli_and_generate_from_the_archive(tiny_genai_build, tmp_path):
    out = tmp_path / "t.olivepress.tar.gz"
    result = olivepress("package", str(tiny_genai_build), "--name", "tiny", "--version", "3", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert read_manifest(out)["version"] == "3"
    generated = olivepress(
        "generate", "-m", str(out), "-p", "Paris", "--max_new_tokens", "4", "--active", "default"
    )
    assert generated.returncode == 0, generated.stderr
    assert_one_line_error(olivepress("package", str(tmp_path / "none")), "is not a folder")


def test_register_pull_round_trip(archive, tiny_genai_build, registry, tmp_path):
    from olivepress.share.registry import pull, register, resolve_version
    from olivepress.share.resolve import local_model

    first = register(tiny_genai_build, "ft-for-travel", "1")
    second = register(archive, "ft-for-travel")
    assert (first.uri, second.uri, first.registry_uri) == (
        "models:/ft-for-travel/1",
        "models:/ft-for-travel/2",
        registry,
    )
    found = resolve_version("models:/ft-for-travel/latest")
    assert (
        found.version == "2"
        and found.tags["adapters"] == "default,second"
        and found.tags["precision"] == "fp32"
    )
    pulled = pull("models:/ft-for-travel/1", tmp_path / "pulled")
    for path, entry in read_manifest(archive)["files"].items():
        if path.startswith("model/") and "second" not in path and "adapters.json" not in path:
            assert sha256_file(pulled / path) == entry["sha256"], path
    served = local_model("models:/ft-for-travel/2")
    assert GenAIModel(served).adapter_names == ["default", "second"]
    with pytest.raises(OlivepressError, match="use --version 3"):
        register(archive, "ft-for-travel", "1")
    with pytest.raises(OlivepressError, match="did you mean 'ft-for-travel'"):
        pull("models:/ft-for-travle/1", tmp_path / "x")
    with pytest.raises(OlivepressError, match="has no version 7"):
        pull("models:/ft-for-travel/7", tmp_path / "y")


def test_register_and_pull_commands_with_the_seed_flags(tiny_genai_build, tmp_path):
    uri = f"sqlite:///{tmp_path / 'reg.db'}"
    result = olivepress(
        "register",
        "--name",
        "ft-for-travel",
        "--version",
        "1",
        "--path",
        str(tiny_genai_build),
        "--registry_uri",
        uri,
    )
    assert result.returncode == 0, result.stderr
    assert "models:/ft-for-travel/1" in result.stderr
    result = olivepress(
        "pull", "models:/ft-for-travel/1", "-o", str(tmp_path / "back"), "--registry-uri", uri
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back" / "model" / "genai_config.json").is_file()
    assert_one_line_error(
        olivepress("pull", "ft-for-travel/1", "-o", str(tmp_path / "z")), r"models:/NAME/VERSION"
    )


def test_packaging_config_in_a_workflow(tiny_genai_build, tmp_path, registry):
    from olivepress.engine.packaging import package_outputs
    from olivepress.share.registry import resolve_version
    from olivepress.workflow.config import WorkflowConfig
    from olivepress.workflow.normalize import normalize_workflow

    seed = {
        "packaging_config": [
            {"type": "Zipfile", "name": "OutputModels", "config": {"export_in_mlflow_format": False}},
            {"type": "MLflowModels", "name": "ft-for-travel", "version": 1},
        ]
    }
    config = WorkflowConfig.model_validate(normalize_workflow(seed))
    assert [c.type for c in config.packaging_config] == ["Zipfile", "MLflowModels"]
    with pytest.raises(OlivepressError, match="Azure ML"):
        WorkflowConfig.model_validate(normalize_workflow({"packaging_config": {"type": "AzureMLModels"}}))
    import shutil

    output = shutil.copytree(tiny_genai_build, tmp_path / "out")
    archives = package_outputs([output], config.packaging_config)
    assert [a.name for a in archives] == ["OutputModels-1.olivepress.tar", "ft-for-travel-1.olivepress.tar"]
    assert all(a.parent == output for a in archives)
    # Archives in the folder are not packed into the next archive.
    assert not any(path.endswith(".olivepress.tar") for path in read_manifest(archives[1])["files"])
    assert resolve_version("models:/ft-for-travel/1").tags["model_kind"] == "onnx-genai"


def test_run_packages_the_output_at_the_end(tiny_genai_build, tmp_path):
    config = {
        "input_model": {"type": "ONNXModel", "config": {"model_path": str(tiny_genai_build / "model")}},
        "passes": {},
        "packaging_config": {
            "type": "Zipfile",
            "name": "OutputModels",
            "config": {"export_in_mlflow_format": False},
        },
        "engine": {"output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")},
    }
    (tmp_path / "w.json").write_text(json.dumps(config))
    result = olivepress("run", "--config", str(tmp_path / "w.json"))
    assert result.returncode == 0, result.stderr
    archive = tmp_path / "out" / "OutputModels-1.olivepress.tar"
    assert read_manifest(archive)["adapters"] == {"default": "adapter_weights.onnx_adapter"}
    assert GenAIModel(unpack_package(archive, tmp_path / "unpacked")).adapter_names == ["default"]
