"""What the gateway answers when authentication fails: Envoy's local replies (plain text)."""

from __future__ import annotations

from poolgate.core.errors import BodyFormat, PoolgateError

# Envoy's api_key_auth body for a missing or unknown key.
API_KEY_FAILED = "Client authentication failed."


class AuthenticationFailed(PoolgateError):
    """401: no credential, or one that does not verify. `detail` (Envoy's response code
    details, e.g. `api_key_auth{missing_api_key}`) goes to the access log; neither says what
    the credential was."""

    status = 401
    type = "AuthenticationError"
    body_format = BodyFormat.ENVOY_TEXT

    def __init__(self, message: str, *, www_authenticate: str, detail: str) -> None:
        super().__init__(message, headers={"www-authenticate": www_authenticate})
        self.detail = detail


class AccessDenied(AuthenticationFailed):
    """403: a valid token whose audiences the provider does not allow (Envoy's jwt_authn)."""

    status = 403
    type = "PermissionDeniedError"
