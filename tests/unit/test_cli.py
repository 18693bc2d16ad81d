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


def _gateway(command: str, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "poolgate", command, "-f", ".", *args],
                          capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "", **(env or {})}, timeout=60)


def test_shared_load_settings_are_checked_before_starting() -> None:
    cases = [
        (("--shared-load-redis", "redis://h:6379"), {}, "--shared-load-redis",
         "without a URL scheme"),
        (("--shared-load-redis", "h"), {}, "--shared-load-redis", "missing ':port'"),
        ((), {"KV_ENDPOINTS": "h:70000"}, "--shared-load-redis", "port must be 1-65535"),
        (("--shared-load-interval", "0.1"), {}, "--shared-load-interval",
         "only used with --shared-load-redis"),
        (("--shared-load-replica-id", "r1"), {"KV_ENDPOINTS": ""}, "--shared-load-replica-id",
         "only used with --shared-load-redis"),
        (("--shared-load-redis", "h:1", "--shared-load-interval", "0.5",
          "--shared-load-staleness", "0.6"), {}, "--shared-load-staleness",
         "at least twice the interval"),
        (("--shared-load-redis", "h:1", "--shared-load-replica-id", "a b"), {},
         "--shared-load-replica-id", "without spaces"),
        (("--shared-load-redis", "h:1", "--shared-load-key", " "), {}, "--shared-load-key",
         "without spaces"),
    ]
    # epp shares the check (cli._shared_load_settings): a few cases show it is wired there too.
    for command, checked in (("serve", cases), ("epp", cases[2:6])):
        for args, env, flag, message in checked:
            out = _gateway(command, *args, env=env)
            assert out.returncode == 2, (command, args, out.stderr)
            assert flag in out.stderr and message in out.stderr, (command, args, out.stderr)
            assert "Traceback" not in out.stderr
