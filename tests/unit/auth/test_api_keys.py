"""The API-key table (digests only, constant-time comparison) and the router's key file."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from poolgate.auth.api_keys import ApiKeyTable, key_digest
from poolgate.auth.key_file import KeyFileError, load_key_file, parse_key_file
from poolgate.auth.spec import ApiKeyCredential

KEY_A, KEY_B = "sk-alpha-0123456789", "sk-beta-9876543210"


def table() -> ApiKeyTable:
    return ApiKeyTable([ApiKeyCredential("team-a", key_digest(KEY_A)),
                        ApiKeyCredential("team-b", key_digest(KEY_B))])


@pytest.mark.parametrize(
    ("presented", "client"),
    [
        pytest.param(KEY_A, "team-a", id="known"),
        pytest.param(KEY_B, "team-b", id="other-known"),
        pytest.param(KEY_A[:-1], None, id="prefix-of-a-key"),
        pytest.param(KEY_A + "x", None, id="longer"),
        pytest.param("", None, id="empty"),
    ],
)
def test_client_for(presented: str, client: str | None) -> None:
    assert table().client_for(presented) == client


def test_the_match_is_confirmed_with_a_constant_time_comparison(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # what api_keys calls
    assert table().client_for(KEY_A) == "team-a"
    assert calls == [(key_digest(KEY_A), key_digest(KEY_A))]


def test_neither_the_table_nor_its_credentials_print_a_key() -> None:
    t = table()
    shown = repr(t) + repr(ApiKeyCredential("team-a", key_digest(KEY_A)))
    assert KEY_A not in shown and key_digest(KEY_A).hex() not in shown
    assert repr(t) == "<ApiKeyTable clients=2>"


def test_key_file_lines() -> None:
    t = parse_key_file(f"# clients\n\nteam-a: {KEY_A}\n  team-b :{KEY_B}  \n")
    assert (t.client_for(KEY_A), t.client_for(KEY_B), len(t)) == ("team-a", "team-b", 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("no colon here\n", "keys:1: expected 'CLIENT_ID: KEY'", id="no-colon"),
        pytest.param(": sk-x\n", "keys:1: expected 'CLIENT_ID: KEY'", id="no-client"),
        pytest.param("a:\n", "keys:1: client 'a' has an empty key", id="empty-key"),
        pytest.param(f"a: {KEY_A}\na: {KEY_B}\n", "keys:2: client 'a' is listed again (first on "
                     "line 1)", id="client-twice"),
        pytest.param(f"a: {KEY_A}\nb: {KEY_A}\n", "keys:2: client 'b' has the same key as the "
                     "client on line 1", id="key-twice"),
        pytest.param("# nothing\n", "keys: no 'CLIENT_ID: KEY' line", id="empty"),
    ],
)
def test_key_file_errors_name_the_line_never_the_key(text: str, message: str) -> None:
    with pytest.raises(KeyFileError) as e:
        parse_key_file(text, "keys")
    assert str(e.value) == message
    assert KEY_A not in str(e.value)


def test_unreadable_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read: No such file or directory"):
        load_key_file(tmp_path / "missing")
