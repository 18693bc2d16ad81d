"""The API-key table: which client a key belongs to, looked up without ever holding the keys.

Keys are kept as SHA-256 digests only (built once per configuration). A lookup hashes what the
client sent and finds the digest; its timing depends on the digest of the presented value, never
on how many leading characters of a real key it shares, and the final equality is
`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from poolgate.auth.spec import ApiKeyCredential


def key_digest(key: str | bytes) -> bytes:
    """The SHA-256 digest an API key is stored and compared as."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


class ApiKeyTable:
    """Client ids by key digest; the first credential of a client id wins, as in Envoy Gateway."""

    __slots__ = ("_by_digest",)

    def __init__(self, credentials: Iterable[ApiKeyCredential]) -> None:
        self._by_digest: dict[bytes, ApiKeyCredential] = {}
        for credential in credentials:
            self._by_digest.setdefault(credential.digest, credential)

    def client_for(self, key: str) -> str | None:
        """The client id of `key`, or None for an empty or unknown key."""
        if not key:
            return None
        digest = key_digest(key)
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found.digest, digest):
            return None
        return found.client

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:
        return f"<ApiKeyTable clients={len(self._by_digest)}>"
