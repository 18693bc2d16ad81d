"""`poolgate envoy-config`: flags, output, the untranslated list on stderr, exit codes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from poolgate.cli import app
from poolgate.envoy.command import options_of, parse_address, run
from tests.unit.config.manifests import GATEWAY, route
from tests.unit.envoyconf.render import EXAMPLES

SEED_000 = EXAMPLES / "seed-000-circuit-breaker"


@pytest.mark.parametrize("text,expected", [
    pytest.param("127.0.0.1:9002", ("127.0.0.1", 9002), id="ipv4"),
    pytest.param("epp.default.svc", ("epp.default.svc", 9002), id="name-default-port"),
    pytest.param("[::1]:9100", ("::1", 9100), id="ipv6"),
    pytest.param("::1", ("::1", 9002), id="bare-ipv6"),
])
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, 9002) == expected


@pytest.mark.parametrize("text", ["host:0", "host:x", ":9002", "[::1", "[::1]9"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text, 9002)


def test_run_writes_the_file_and_lists_the_untranslated(tmp_path: Path) -> None:
    err, out = io.StringIO(), io.StringIO()
    target = tmp_path / "envoy.yaml"
    options = options_of("127.0.0.1:19002", 19901, "127.0.0.1", None, {80: 8080})
    assert run([SEED_000], options, target, err=err, out=out) == 0
    assert out.getvalue() == ""
    config = yaml.safe_load(target.read_text())
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8080}
    assert err.getvalue().splitlines() == [
        "not translated: InferenceModel default/inferencemodel-sample: model name, criticality "
        "and target-model split on pool default/vllm-llama2-7b-pool are applied by `poolgate "
        "epp` (the endpoint picker), not by Envoy",
    ]


def test_run_refuses_broken_manifests(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(GATEWAY + "---\n" + route(
        "r", '- matches: [{path: {type: RegularExpression, value: "("}}]\n'
             '  backendRefs: [{group: poolgate.dev, kind: Address, name: 1.2.3.4, port: 1}]'))
    err = io.StringIO()
    assert run([tmp_path], options_of("127.0.0.1", 9901, "0.0.0.0", None, {}), None,
               err=err, out=io.StringIO()) == 2
    assert "invalid regular expression" in err.getvalue()


def test_run_refuses_port_for_several_listener_ports(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text(GATEWAY.replace(
        "- {name: http, port: 80, protocol: HTTP}",
        "- {name: http, port: 80, protocol: HTTP}\n  - {name: alt, port: 81, protocol: HTTP}"))
    err = io.StringIO()
    options = options_of("127.0.0.1", 9901, "0.0.0.0", 8080, {})
    assert run([tmp_path], options, None, err=err, out=io.StringIO()) == 2
    assert "--port-map" in err.getvalue()


def test_cli_prints_the_bootstrap() -> None:
    result = CliRunner().invoke(app, ["envoy-config", "-f", str(SEED_000), "--port", "8080",
                                      "--epp-address", "10.1.2.3:9102", "--admin-port", "19000"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("# Envoy bootstrap rendered by `poolgate envoy-config`")
    config = yaml.safe_load(text)
    assert config["admin"]["address"]["socket_address"]["port_value"] == 19000


def test_cli_response_body_mode() -> None:
    result = CliRunner().invoke(app, ["envoy-config", "-f", str(SEED_000),
                                      "--response-body-mode", "none"])
    assert result.exit_code == 0, result.output
    assert "response_body_mode: NONE" in result.stdout
    result = CliRunner().invoke(app, ["envoy-config", "-f", str(SEED_000),
                                      "--response-body-mode", "buffered"])
    assert result.exit_code == 2
    assert "--response-body-mode" in result.output


def test_cli_refuses_a_bad_epp_address() -> None:
    result = CliRunner().invoke(app, ["envoy-config", "-f", str(SEED_000),
                                      "--epp-address", "host:99999"])
    assert result.exit_code == 2
    assert "--epp-address" in result.output
