"""`poolgate envoy-config`: load the manifests, render the bootstrap, write it, list what is
not translated."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TextIO

from poolgate.config.build import load_snapshot
from poolgate.envoy.bootstrap import render
from poolgate.envoy.model import EnvoyOptions

EXIT_MANIFESTS = 2  # as `poolgate serve`: the manifests have errors


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `HOST` as (host, port); ValueError when malformed."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected [V6]:PORT")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, given = text.partition(":")
        port = _port(given, text)
    if not host:
        raise ValueError(f"{text!r}: no host")
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: the port must be a number from 1 to 65535")
    return int(text)


def run(files: Sequence[Path], options: EnvoyOptions, output: Path | None,
        err: TextIO | None = None, out: TextIO | None = None) -> int:
    """Render the bootstrap for `files` to `output` (`out`, default stdout, when None); the
    untranslated list goes to `err` (default stderr). Exit code: 0, or 2 when the manifests
    have errors (each printed)."""
    err = err if err is not None else sys.stderr
    out = out if out is not None else sys.stdout
    result = load_snapshot(list(files))
    if result.snapshot is None:
        for problem in result.errors:
            print(f"error: {problem}", file=err)
        return EXIT_MANIFESTS
    declared = sorted({lst.port for lst in result.snapshot.listeners})
    unmapped = [p for p in declared if p not in options.port_map]
    if options.port is not None and len(unmapped) > 1:
        print(f"error: --port replaces a single listener port, but the Gateways declare ports "
              f"{', '.join(map(str, declared))}; use --port-map DECLARED=BOUND for each",
              file=err)
        return EXIT_MANIFESTS
    rendered = render(result.snapshot, options, result.warnings)
    text = rendered.yaml()
    if output is None:
        out.write(text)
    else:
        output.write_text(text)
    for entry in rendered.untranslated:
        print(f"not translated: {entry}", file=err)
    return 0


def options_of(epp_address: str, admin_port: int, host: str, port: int | None,
               port_map: Mapping[int, int],
               response_body_mode: str = "FULL_DUPLEX_STREAMED") -> EnvoyOptions:
    """The rendering options of the command line; ValueError for a bad `--epp-address` or
    response body mode."""
    epp_host, epp_port = parse_address(epp_address, 9002)
    return EnvoyOptions(epp_host=epp_host, epp_port=epp_port, admin_port=admin_port,
                        listen_host=host, port=port, port_map=MappingProxyType(dict(port_map)),
                        response_body_mode=response_body_mode.upper())
