"""Instant backends for the saturation section (issue 18): Envoy answering, on one listener per
backend, what the simulator answered to the same requests, recorded once per section.

The simulator is one Python process: with the `zero` profile it serves about 9.5k tiny
completions/s to `wrk` on one core, so behind any front it, not the front, would set the
saturation point, and its CPU would take the core the front needs. Envoy's `direct_response`
costs about 16 µs per request on one worker (54k requests/s to `wrk` on this machine), so the
fronts saturate first. Each route replays one recorded answer (status, content type, body) for
an exact path; the request body is read whole first (the buffer filter), so a connection stays
open (a direct response to a request whose body is still arriving closes it). The listeners
speak HTTP/1.1 only: sglang-router's HTTP/2 probe is refused, as by the simulator.

Streamed answers cannot be replayed this way (one body, written at once), so the SSE case runs
on the simulator itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.suite.commands import HOST, display
from benchmarks.suite.epp_stack import envoy_argv
from benchmarks.suite.manifests import (
    POOL_LABEL_KEY,
    POOL_LABEL_VALUE,
    write_config_dir,
)
from benchmarks.suite.processes import ProcessGroup, free_port_range, wait_ready
from benchmarks.suite.stack import Fleet
from poolgate.bench import BenchError
from poolgate.sim.fleet import endpoints_document

# What the fronts ask a backend for: the load itself, vllm-router's and sglang-router's probes
# at start, vllm-router cache_aware's per-request render and tokenize calls, and the metrics
# page poolgate scrapes (see the report's table of the peers' calls).
GET_PATHS = ("/health", "/v1/models", "/metrics", "/version", "/server_info", "/get_server_info",
             "/model_info", "/get_model_info")
POST_PATHS = ("/v1/completions", "/v1/completions/render", "/tokenize")
NOT_FOUND = b'{"detail":"Not Found"}'
# Envoy's default limit of a direct response body is 4 KiB; the metrics page is ~24 KiB.
MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class Answer:
    """One recorded response."""

    status: int
    content_type: str | None
    body: bytes


async def record_answers(base_url: str, post_body: bytes) -> dict[str, Answer]:
    """What the server at `base_url` answers to each of `GET_PATHS` and, with `post_body`, each
    of `POST_PATHS`; a path it does not serve (404) is left out."""
    found: dict[str, Answer] = {}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for method, paths in (("GET", GET_PATHS), ("POST", POST_PATHS)):
            for path in paths:
                data = post_body if method == "POST" else None
                headers = {"Content-Type": "application/json"} if data is not None else None
                try:
                    async with session.request(method, base_url + path, data=data,
                                               headers=headers) as resp:
                        body = await resp.read()
                        if resp.status == 404:
                            continue
                        found[path] = Answer(resp.status, resp.headers.get("Content-Type"), body)
                except (aiohttp.ClientError, TimeoutError, OSError) as e:
                    raise BenchError(f"recording {method} {path} from {base_url}: {e}") from None
    if "/v1/completions" not in found:
        raise BenchError(f"{base_url} did not answer POST /v1/completions")
    return found


def _route(path: str | None, answer: Answer) -> dict[str, Any]:
    match = {"path": path} if path is not None else {"prefix": "/"}
    route: dict[str, Any] = {"match": match, "direct_response": {"status": answer.status}}
    if answer.body:
        route["direct_response"]["body"] = {"inline_string": answer.body.decode()}
    if answer.content_type:
        route["response_headers_to_add"] = [
            {"header": {"key": "content-type", "value": answer.content_type}}]
    return route


def _listener(port: int, answers: Mapping[str, Answer]) -> dict[str, Any]:
    routes = [_route(path, a) for path, a in answers.items()]
    routes.append(_route(None, Answer(404, "application/json", NOT_FOUND)))
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager."
                 "v3.HttpConnectionManager",
        "stat_prefix": f"instant_{port}",
        "codec_type": "HTTP1",
        "http_filters": [
            {"name": "envoy.filters.http.buffer",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http."
                                       "buffer.v3.Buffer", "max_request_bytes": MAX_BODY}},
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http."
                                       "router.v3.Router"}},
        ],
        "route_config": {"name": "instant", "max_direct_response_body_size_bytes": MAX_BODY,
                         "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
    }
    return {"name": f"instant_{port}",
            "address": {"socket_address": {"address": HOST, "port_value": port}},
            "filter_chains": [{"filters": [
                {"name": "envoy.filters.network.http_connection_manager",
                 "typed_config": hcm}]}]}


def bootstrap(ports: Sequence[int], answers: Mapping[str, Answer]) -> dict[str, Any]:
    """An Envoy bootstrap with one instant backend per port, each replaying `answers`."""
    if not ports:
        raise ValueError("no ports")
    return {"static_resources": {"listeners": [_listener(p, answers) for p in ports]}}


def endpoints_file(config_dir: Path, urls: Sequence[str]) -> Path:
    """The suite's manifests in `config_dir`, with a LocalEndpoints declaring `urls` as the
    pool's endpoints (what the simulator writes for its own replicas)."""
    path = write_config_dir(config_dir)
    addresses = [u.removeprefix("http://") for u in urls]
    path.write_text(endpoints_document("instant", {POOL_LABEL_KEY: POOL_LABEL_VALUE}, addresses))
    return path


async def start_instant_fleet(group: ProcessGroup, replicas: int, answers: Mapping[str, Answer],
                              workdir: Path) -> Fleet:
    """Envoy with `replicas` instant backends on consecutive free ports, and the suite's
    manifests naming them; ready once every backend answers /health."""
    port = free_port_range(replicas)
    ports = [port + i for i in range(replicas)]
    proc = group.start("instant-backends", envoy_argv(write_bootstrap(workdir, ports, answers)))
    urls = tuple(f"http://{HOST}:{p}" for p in ports)
    await wait_ready([f"{u}/health" for u in urls], proc)
    config_dir = workdir / "config"
    endpoints_file(config_dir, urls)
    return Fleet(proc, urls, config_dir)


def write_bootstrap(workdir: Path, ports: Sequence[int], answers: Mapping[str, Answer]) -> Path:
    """`bootstrap(ports, answers)` as `workdir/instant.yaml`."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "instant.yaml"
    path.write_text(yaml.safe_dump(bootstrap(ports, answers), sort_keys=False))
    return path


def instant_command(path: Path | str = "instant.yaml") -> str:
    """Envoy's command as the report shows it (the bootstrap is written per run)."""
    return display(envoy_argv(path), Path(os.getcwd()))
