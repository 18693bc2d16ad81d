"""The router's API-key check: API_KEYS_FILE at start-up, 401 on /infer without a listed key."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.router.app import Router
from poolgate.router.config import ConfigError, load_config
from poolgate.router.errors import REASON_HEADER, Unauthenticated
from poolgate.router.main import describe_startup
from poolgate.router.metrics import RouterMetrics

KEY = "sk-router-0123456789"


def router(tmp_path: Path) -> Router:
    path = tmp_path / "keys"
    path.write_text(f"# who may call /infer\nteam-a: {KEY}\n")
    config = load_config({"MODEL_REF": "m", "API_KEYS_FILE": str(path)})
    return Router(config, RouterMetrics(), None, None)


def test_no_key_file_means_no_check() -> None:
    r = Router(load_config({"MODEL_REF": "m"}), RouterMetrics(), None, None)
    assert r.authenticate({}) is None


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"authorization": f"Bearer {KEY}"}, id="bearer"),
        pytest.param({"x-api-key": KEY}, id="x-api-key"),
    ],
)
def test_a_listed_key_names_its_client(tmp_path: Path, headers: dict[str, str]) -> None:
    assert router(tmp_path).authenticate(headers) == "team-a"


@pytest.mark.parametrize(
    ("headers", "reason", "message"),
    [
        pytest.param({}, "missing_api_key", "missing API key: send Authorization: Bearer KEY "
                     "(or x-api-key: KEY)", id="missing"),
        pytest.param({"authorization": "Bearer sk-wrong"}, "invalid_api_key", "invalid API key",
                     id="wrong"),
    ],
)
def test_otherwise_401(tmp_path: Path, headers: dict[str, str], reason: str, message: str) -> None:
    r = router(tmp_path)
    with pytest.raises(Unauthenticated) as e:
        r.authenticate(headers)
    assert (e.value.status, e.value.message, e.value.headers[REASON_HEADER]) == (401, message,
                                                                                 reason)
    assert e.value.headers["WWW-Authenticate"] == 'Bearer realm="poolgate-router"'
    assert r.metrics.rejected.labels(reason)._value.get() == 1


def test_a_bad_key_file_is_a_start_up_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"team-a {KEY}\n")
    with pytest.raises(ConfigError) as e:
        load_config({"MODEL_REF": "m", "API_KEYS_FILE": str(path)})
    assert str(e.value) == f"API_KEYS_FILE: {path}:1: expected 'CLIENT_ID: KEY'"
    assert KEY not in str(e.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config({"MODEL_REF": "m", "API_KEYS_FILE": str(tmp_path / "missing")})


def test_start_up_says_keys_are_needed_without_showing_them(tmp_path: Path) -> None:
    lines = describe_startup(router(tmp_path).config)
    assert "/infer needs an API key: 1 client(s) in API_KEYS_FILE" in lines
    assert KEY not in "\n".join(lines) + repr(router(tmp_path).config)
