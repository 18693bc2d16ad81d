from __future__ import annotations

import subprocess
import sys

from poolgate import __version__


def test_version_flag_prints_the_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "poolgate", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"poolgate {__version__}"


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "poolgate", "serve", *args],
                          capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""},
                          timeout=60)


def test_serve_settings_of_the_kubernetes_source_are_checked_before_starting() -> None:
    cases = [
        ((), "give the manifests with -f"),
        (("--source", "git"), "choose files or kubernetes"),
        (("-f", ".", "--namespace", "ml"), "only used with --source kubernetes"),
        (("-f", ".", "--publish-service", "ml/gw"), "only used with --source kubernetes"),
        (("--source", "kubernetes", "--controller-name", "poolgate"), "DOMAIN/PATH"),
        (("--source", "kubernetes", "--publish-service", "gw"), "expected NAMESPACE/NAME"),
        (("--source", "kubernetes", "--retry-period", "20"), "--retry-period < --renew-deadline"),
    ]
    for args, message in cases:
        out = _serve(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
