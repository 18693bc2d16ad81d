"""The API-key file of `poolgate router` (`API_KEYS_FILE`): one `CLIENT_ID: KEY` per line.

Blank lines and lines starting with `#` are ignored; spaces around the id and the key are
removed. A client id or a key may appear only once, and a key may not be empty. Problems name
the file and line, never the key.
"""

from __future__ import annotations

from pathlib import Path

from poolgate.auth.api_keys import ApiKeyTable, key_digest
from poolgate.auth.spec import ApiKeyCredential


class KeyFileError(ValueError):
    """The key file cannot be used; the message names the line, never a key."""


def parse_key_file(text: str, name: str = "API keys file") -> ApiKeyTable:
    """The table of a key file's text; raises `KeyFileError`."""
    credentials: list[ApiKeyCredential] = []
    clients: dict[str, int] = {}
    digests: dict[bytes, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        client, sep, key = line.partition(":")
        client, key = client.strip(), key.strip()
        if not sep or not client:
            raise KeyFileError(f"{name}:{number}: expected 'CLIENT_ID: KEY'")
        if not key:
            raise KeyFileError(f"{name}:{number}: client {client!r} has an empty key")
        if client in clients:
            raise KeyFileError(f"{name}:{number}: client {client!r} is listed again "
                               f"(first on line {clients[client]})")
        digest = key_digest(key)
        if digest in digests:
            raise KeyFileError(f"{name}:{number}: client {client!r} has the same key as the "
                               f"client on line {digests[digest]}")
        clients[client] = number
        digests[digest] = number
        credentials.append(ApiKeyCredential(client, digest))
    if not credentials:
        raise KeyFileError(f"{name}: no 'CLIENT_ID: KEY' line")
    return ApiKeyTable(credentials)


def load_key_file(path: Path) -> ApiKeyTable:
    """The table of the key file at `path`; raises `KeyFileError` (unreadable file included)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise KeyFileError(f"{path}: cannot read: {reason}") from None
    return parse_key_file(text, str(path))
