"""`make test-image`: start the built image with podman and talk to it over HTTP (issue 14).

Standard library only, run by the host's python3. Checks, each timed:
- `poolgate --version` in the image prints the project's version;
- the image's user is 10001:10001, it exposes 8080 and 9901, and carries its OCI version label;
- `poolgate demo` (simulated replicas plus the gateway) in a read-only container with every
  capability dropped, as deploy/ runs it: GET /v1/models and POST /v1/chat/completions through
  the published port 8080, every process of the container runs as uid 10001, and `podman stop`
  (SIGTERM) ends it with exit code 0;
- `poolgate router` (seed 003) the same way: GET /readyz and POST /infer.

Containers are stopped and removed by their id, also when a check fails.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

UID = "10001"


class CheckFailed(Exception):
    """A check of the image did not hold; the message says which and what was seen."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Podman:
    """podman, with the flags this machine needs (scripts/image/lib.sh podman_flags)."""

    def __init__(self, command: list[str], flags: list[str]) -> None:
        self.command = command
        self.flags = flags

    def run(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [*self.command, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if check and result.returncode != 0:
            raise CheckFailed(f"podman {' '.join(args)}: exit {result.returncode}: "
                              f"{result.stderr.strip()}")
        return result.stdout

    @contextmanager
    def container(self, image: str, *args: str, ports: dict[int, int],
                  env: dict[str, str] | None = None) -> Iterator[str]:
        """A detached container like deploy/ runs it; yields its id, removes it afterwards."""
        publish = [f"--publish=127.0.0.1:{host}:{inside}" for inside, host in ports.items()]
        environment = [f"--env={k}={v}" for k, v in (env or {}).items()]
        cid = self.run("run", "--detach", *self.flags, "--read-only", "--cap-drop=ALL",
                       "--security-opt=no-new-privileges", *publish, *environment,
                       image, *args).strip()
        try:
            yield cid
        finally:
            self.run("rm", "--force", "--time=2", cid, check=False)

    def stop(self, cid: str) -> int:
        """SIGTERM (podman stop), then the container's exit code."""
        self.run("stop", "--time=15", cid)
        return int(self.run("inspect", "--format={{.State.ExitCode}}", cid).strip())


def http(method: str, url: str, body: object | None = None, timeout: float = 10.0
         ) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def wait_for(url: str, podman: Podman, cid: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            status, _ = http("GET", url, timeout=2.0)
            if status == 200:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    logs = podman.run("logs", cid, check=False)
    raise CheckFailed(f"{url} did not answer 200 within {seconds:.0f} s; container log:\n{logs}")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def check_uid(podman: Podman, cid: str) -> None:
    users = podman.run("top", cid, "huser").split()[1:]
    expect(bool(users) and set(users) == {UID}, f"processes run as {users}, expected {UID}")


def check_version(podman: Podman, image: str, version: str) -> None:
    out = podman.run("run", "--rm", *podman.flags, image, "--version").strip()
    expect(out == f"poolgate {version}", f"--version printed {out!r}, expected 'poolgate {version}'")


def check_config(podman: Podman, image: str, version: str) -> None:
    config = json.loads(podman.run("image", "inspect", "--format={{json .Config}}", image))
    expect(config.get("User") == f"{UID}:{UID}", f"image user {config.get('User')!r}")
    ports = set(config.get("ExposedPorts") or {})
    expect({"8080/tcp", "9901/tcp"} <= ports, f"exposed ports {sorted(ports)}")
    label = (config.get("Labels") or {}).get("org.opencontainers.image.version")
    expect(label == version, f"org.opencontainers.image.version is {label!r}")


def check_demo(podman: Podman, image: str) -> None:
    port = free_port()
    with podman.container(image, "demo", "--host", "0.0.0.0", "--profile", "fast",
                          "--replicas", "2", ports={8080: port}) as cid:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/v1/models", podman, cid)
        status, models = http("GET", f"{base}/v1/models")
        ids = [m.get("id") for m in models.get("data", [])]
        expect(status == 200 and "/model/llama2" in ids, f"/v1/models: {status} {ids}")
        status, reply = http("POST", f"{base}/v1/chat/completions", {
            "model": "/model/llama2", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hello from the image test"}]})
        choices = reply.get("choices") or []
        expect(status == 200 and len(choices) == 1, f"chat completion: {status} {reply}")
        check_uid(podman, cid)
        code = podman.stop(cid)
        expect(code == 0, f"demo exited {code} on SIGTERM")


def check_router(podman: Podman, image: str) -> None:
    port = free_port()
    with podman.container(image, "router", ports={8080: port},
                          env={"MODEL_REF": "llama-3-8b", "MAX_CONCURRENCY": "4"}) as cid:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/readyz", podman, cid)
        status, reply = http("POST", f"{base}/infer", {"prompt": "hello"})
        expect(status == 200 and reply.get("modelRef") == "llama-3-8b", f"/infer: {status} {reply}")
        check_uid(podman, cid)
        code = podman.stop(cid)
        expect(code == 0, f"router exited {code} on SIGTERM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--version", required=True, help="the project's version")
    parser.add_argument("--podman", default="podman", help="command, e.g. 'sudo podman'")
    parser.add_argument("--flags", default="", help="podman run flags (lib.sh podman_flags)")
    args = parser.parse_args()
    podman = Podman(shlex.split(args.podman), shlex.split(args.flags))
    checks: list[tuple[str, Callable[[], None]]] = [
        ("poolgate --version", lambda: check_version(podman, args.image, args.version)),
        ("user 10001, ports, labels", lambda: check_config(podman, args.image, args.version)),
        ("demo: /v1/models, chat, uid, SIGTERM", lambda: check_demo(podman, args.image)),
        ("router: /readyz, /infer, uid, SIGTERM", lambda: check_router(podman, args.image)),
    ]
    failed = 0
    for name, check in checks:
        start = time.monotonic()
        try:
            check()
        except CheckFailed as error:
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - start:.1f} s): {error}")
        else:
            print(f"ok   {name} ({time.monotonic() - start:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
