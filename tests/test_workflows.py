"""The GitHub Actions workflows in .github/workflows: actionlint finds nothing, and the facts users rely on hold.

actionlint (a Go module) is built once into ``${ADF_CACHE:-~/.cache/activedataflow}/bin`` with
``go install``, beside the control-plane binaries. It runs shellcheck on the ``run:`` scripts when
shellcheck is on PATH (Debian: ``apt-get install shellcheck``); the test does not need it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import REPO
from tests.k8s.cluster import cache_dir

WORKFLOWS = REPO / ".github" / "workflows"
CHART = REPO / "charts" / "activedataflow"
ACTIONLINT_VERSION = "v1.7.12"
ACTIONLINT_MODULE = "github.com/rhysd/actionlint/cmd/actionlint"


def _unavailable(msg: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _version(exe: Path) -> str | None:
    """The version an actionlint binary reports (its first line), or None without a working one."""
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        return None
    try:
        proc = subprocess.run([str(exe), "-version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return proc.stdout.partition("\n")[0].strip() if proc.returncode == 0 else None


@pytest.fixture(scope="session")
def actionlint() -> str:
    """actionlint from the binary cache, built there with ``go install`` if missing (or another version)."""
    cache = cache_dir()
    exe = cache / "bin" / "actionlint"
    if _version(exe) == ACTIONLINT_VERSION:
        return str(exe)
    go = shutil.which("go")
    if not go:
        _unavailable(f"{exe} is missing and building it needs Go on PATH")
    exe.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time (as scripts/build-control-plane.sh): parallel runs may all find it missing.
    with open(cache / ".actionlint.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _version(exe) != ACTIONLINT_VERSION:
            # Built beside the cache, then moved in whole: a concurrent reader never sees half a binary.
            with tempfile.TemporaryDirectory(dir=cache, prefix=".actionlint-") as gobin:
                proc = subprocess.run(
                    [go, "install", f"{ACTIONLINT_MODULE}@{ACTIONLINT_VERSION}"],
                    env={**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"},
                    capture_output=True, text=True, timeout=900,
                )
                if proc.returncode != 0:
                    pytest.fail(f"go install {ACTIONLINT_MODULE}@{ACTIONLINT_VERSION} exited {proc.returncode}:\n"
                                f"{proc.stdout}{proc.stderr}")
                os.replace(Path(gobin) / "actionlint", exe)
    assert _version(exe) == ACTIONLINT_VERSION
    return str(exe)


def workflow_files() -> list[Path]:
    files = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert files, f"no workflows in {WORKFLOWS}"
    return files


def test_actionlint_finds_nothing(actionlint: str) -> None:
    files = [str(f.relative_to(REPO)) for f in workflow_files()]
    proc = subprocess.run([actionlint, "-no-color", *files], cwd=REPO, capture_output=True, text=True, timeout=120)
    shellcheck = "with shellcheck" if shutil.which("shellcheck") else "without shellcheck (not on PATH)"
    assert proc.returncode == 0 and not proc.stdout.strip(), (
        f"actionlint {ACTIONLINT_VERSION} ({shellcheck}) exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    )


# --------------------------------------------------------------------------- what the workflows say


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in doc:  # YAML 1.1 (PyYAML) reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def step(job: dict[str, Any], *, uses: str | None = None, id: str | None = None) -> dict[str, Any]:
    """The one step of a job that uses an action (any version) or has an id."""
    found = [s for s in job["steps"]
             if (uses is None or s.get("uses", "").partition("@")[0] == uses) and (id is None or s.get("id") == id)]
    assert len(found) == 1, f"{len(found)} steps with uses={uses} id={id}"
    return found[0]


def index(job: dict[str, Any], s: dict[str, Any]) -> int:
    return next(i for i, x in enumerate(job["steps"]) if x is s)


def run_step(s: dict[str, Any], **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """A step's ``run:`` script as the runner runs it (bash -eo pipefail), and what it wrote to GITHUB_OUTPUT."""
    script = s["run"]
    assert "${{" not in script, "the step's script should read its inputs from the environment"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "output"
        out.touch()
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=REPO,
            env={**os.environ, "GITHUB_OUTPUT": str(out), **env}, capture_output=True, text=True, timeout=60,
        )
        outputs = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    return proc, outputs


EVENT_EXPR = re.compile(r"(?:\$\{\{)?\s*github\.event_name\s*(==|!=)\s*'(\w+)'\s*(?:\}\})?")


def when(expr: Any, event: str) -> bool:
    """Evaluate a condition of the form ``github.event_name == 'x'`` (or !=) for an event."""
    m = EVENT_EXPR.fullmatch(str(expr).strip())
    assert m, f"not a condition on github.event_name: {expr!r}"
    return (event == m[2]) == (m[1] == "==")


def chart_meta() -> dict[str, Any]:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


@pytest.fixture(scope="module")
def image_job() -> dict[str, Any]:
    return load("release.yml")["jobs"]["image"]


def test_release_builds_on_pull_requests_and_pushes_from_main_and_tags(image_job: dict[str, Any]) -> None:
    on = load("release.yml")["on"]
    assert "pull_request" in on
    assert on["push"]["branches"] == ["main"]
    assert "v*" in on["push"]["tags"]
    build = step(image_job, uses="docker/build-push-action")
    login = step(image_job, uses="docker/login-action")
    for event, pushes in (("push", True), ("pull_request", False)):
        assert when(build["with"]["push"], event) is pushes, event
        assert when(login["if"], event) is pushes, event
    assert image_job["permissions"]["packages"] == "write"
    assert login["with"]["registry"] == "ghcr.io"
    assert login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"


def test_the_image_is_the_charts_default_repository(image_job: dict[str, Any]) -> None:
    default = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]
    registry, _, name = default.rpartition("/")
    assert registry.startswith("ghcr.io/")
    meta = step(image_job, uses="docker/metadata-action")
    assert meta["with"]["images"].strip() == f"ghcr.io/${{{{ github.repository_owner }}}}/{name}"
    build = step(image_job, uses="docker/build-push-action")
    for output in ("tags", "labels", "annotations"):
        assert build["with"][output] == f"${{{{ steps.{meta['id']}.outputs.{output} }}}}"


def test_the_image_is_multi_arch_from_the_dockerfile(image_job: dict[str, Any]) -> None:
    build = step(image_job, uses="docker/build-push-action")
    assert {"linux/amd64", "linux/arm64"} <= set(re.split(r"[,\s]+", build["with"]["platforms"].strip()))
    assert index(image_job, step(image_job, uses="docker/setup-qemu-action")) < index(image_job, build)
    assert index(image_job, step(image_job, uses="docker/setup-buildx-action")) < index(image_job, build)
    assert build["with"]["context"] == "." and build["with"]["file"] == "Dockerfile"
    assert "build-args" not in build["with"], "the Dockerfile's defaults (its base image) are the users' image"


def test_the_image_tags(image_job: dict[str, Any]) -> None:
    tags = step(image_job, uses="docker/metadata-action")["with"]["tags"].splitlines()
    tags = [t.strip() for t in tags if t.strip()]
    assert "type=semver,pattern={{version}}" in tags  # v0.1.0 -> 0.1.0
    assert "type=semver,pattern={{major}}.{{minor}}" in tags  # v0.1.0 -> 0.1
    assert "type=sha,enable={{is_default_branch}}" in tags  # main -> sha-<short>


def test_the_charts_app_version_is_an_image_tag(image_job: dict[str, Any]) -> None:
    tags = step(image_job, uses="docker/metadata-action")["with"]["tags"]
    m = re.search(r"^\s*type=raw,value=\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}", tags, re.M)
    assert m, tags
    reader = step(image_job, id=m[1])
    app_version = str(chart_meta()["appVersion"])

    proc, outputs = run_step(reader, GITHUB_REF_TYPE="branch", GITHUB_REF_NAME="main")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs[m[2]] == app_version
    # On a tag, the tag is the appVersion it releases.
    proc, outputs = run_step(reader, GITHUB_REF_TYPE="tag", GITHUB_REF_NAME=f"v{app_version}")
    assert proc.returncode == 0 and outputs[m[2]] == app_version, proc.stdout + proc.stderr
    proc, _ = run_step(reader, GITHUB_REF_TYPE="tag", GITHUB_REF_NAME="v999.0.0")
    assert proc.returncode != 0 and "does not match the chart's appVersion" in proc.stdout


def test_the_chart_is_linted_packaged_and_pushed_on_tags() -> None:
    job = load("release.yml")["jobs"]["chart"]
    assert job["needs"] == "image"  # the chart goes out after the image it names
    runs = [s for s in job["steps"] if "run" in s]
    assert any("helm lint" in s["run"] and "charts/activedataflow" in s["run"] for s in runs)
    assert any("helm package charts/activedataflow" in s["run"] for s in runs)
    [push] = [s for s in runs if "helm push" in s["run"]]
    assert 'oci://ghcr.io/$owner/charts' in push["run"]
    [attach] = [s for s in runs if "gh release upload" in s["run"]]
    for s in (push, attach):
        assert s["if"] == "github.ref_type == 'tag'"
    assert job["permissions"] == {"contents": "write", "packages": "write"}

    helm = step(job, uses="azure/setup-helm")
    m = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}", helm["with"]["version"])
    assert m
    proc, outputs = run_step(step(job, id=m[1]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    script = (REPO / "scripts" / "build-control-plane.sh").read_text()
    assert f'HELM_VERSION="${{ADF_HELM_VERSION:-{outputs[m[2]]}}}"' in script


def test_ci_runs_scripts_test_with_go_and_the_cached_control_plane() -> None:
    job = load("ci.yml")["jobs"]["test"]
    [test] = [s for s in job["steps"] if "bash scripts/test" in s.get("run", "")]
    step(job, uses="actions/setup-go")
    step(job, uses="actions/setup-python")
    restore = step(job, uses="actions/cache/restore")
    save = step(job, uses="actions/cache/save")
    assert restore["with"]["path"] == save["with"]["path"] == "~/.cache/activedataflow"
    assert "hashFiles('scripts/build-control-plane.sh', 'scripts/build-image')" in restore["with"]["key"]
    assert save["with"]["key"] == f"${{{{ steps.{restore['id']}.outputs.cache-primary-key }}}}"
    [build] = [s for s in job["steps"] if "scripts/build-control-plane.sh" in s.get("run", "")]
    # saved before the tests run: a failing test still leaves the (long) build cached
    assert index(job, restore) < index(job, build) < index(job, save) < index(job, test)


def test_every_action_is_pinned_to_a_major_version() -> None:
    def uses(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "uses" and isinstance(value, str):
                    yield value
                yield from uses(value)
        elif isinstance(node, list):
            for item in node:
                yield from uses(item)

    for f in workflow_files():
        for spec in uses(load(f.name)):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", spec), f"{f.name}: {spec}"
