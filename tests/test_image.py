"""The container images of scripts/build-image, read from its images.json and docker-save tars.

Missing images skip these tests, except under CI (``CI=true``), where they fail with the command to run.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import REPO

pytestmark = pytest.mark.image

BUILD = "bash scripts/build-image"
MAX_BYTES = 250_000_000


def images_dir() -> Path:
    return Path(os.environ.get("ADF_CACHE") or Path.home() / ".cache" / "activedataflow") / "images"


def _missing(msg: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{msg}: run `{BUILD}`")
    pytest.skip(f"{msg}: run `{BUILD}` to build the images")


@pytest.fixture(scope="module")
def images() -> dict[str, dict[str, Any]]:
    index = images_dir() / "images.json"
    if not index.is_file():
        _missing(f"{index} is missing")
    found = {image["name"]: image for image in json.loads(index.read_text())}
    for image in found.values():
        if not Path(image["tar"]).is_file():
            _missing(f"{image['tar']} is missing")
    return found


def saved(tar_path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest entry and the image config of a one-image docker-save tar."""
    with tarfile.open(tar_path) as tar:

        def member(name: str) -> Any:
            f = tar.extractfile(name)
            assert f is not None, f"{tar_path}: no {name}"
            return json.load(f)

        (manifest,) = member("manifest.json")
        return manifest, member(manifest["Config"])


def app_version() -> str:
    return str(yaml.safe_load((REPO / "charts" / "activedataflow" / "Chart.yaml").read_text())["appVersion"])


def test_every_image_is_listed(images: dict[str, dict[str, Any]]) -> None:
    assert set(images) == {"adf", "pause", "redis"}
    for image in images.values():
        assert Path(image["tar"]).is_absolute()
        assert image["bytes"] > 0
        manifest, _ = saved(image["tar"])
        assert sorted(manifest["RepoTags"]) == sorted(image["refs"])


def test_project_image(images: dict[str, dict[str, Any]]) -> None:
    adf = images["adf"]
    # The chart's default tag, and another one for `helm upgrade` to move to.
    assert f"ghcr.io/activedataflow/activedataflow:{app_version()}" in adf["refs"]
    assert len(adf["refs"]) == 2
    assert all(ref.startswith("ghcr.io/activedataflow/activedataflow:") for ref in adf["refs"])
    assert adf["bytes"] < MAX_BYTES, f"{adf['bytes'] / 1e6:.1f} MB"
    _, config = saved(adf["tar"])
    cfg = config["config"]
    # Numeric, so the kubelet can enforce runAsNonRoot.
    assert cfg["User"] == "10001:10001"
    assert cfg["Entrypoint"] == ["adf"]
    env = dict(item.split("=", 1) for item in cfg["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_pause_image(images: dict[str, dict[str, Any]]) -> None:
    pause = images["pause"]
    assert pause["refs"] == ["registry.k8s.io/pause:3.10"]
    assert pause["bytes"] < 5_000_000
    _, config = saved(pause["tar"])
    assert config["config"]["Entrypoint"] == ["/pause"]


def test_redis_image(images: dict[str, dict[str, Any]]) -> None:
    redis = images["redis"]
    assert redis["refs"] == ["adf.local/redis:7-bookworm"]
    _, config = saved(redis["tar"])
    cfg = config["config"]
    # The chart passes only arguments, runs it as 999 and mounts its volume at /data.
    assert cfg["Entrypoint"] == ["redis-server"]
    assert cfg["User"] == "999:999"
    assert cfg["WorkingDir"] == "/data"
