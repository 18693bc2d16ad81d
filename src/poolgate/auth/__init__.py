"""Authentication (Envoy Gateway SecurityPolicy): API keys and JWTs, as plain Python.

`spec` holds what configuration resolves a policy into; `authenticator.Authenticator` is its
runtime (a key table of digests, parsed JWKS), built once per configuration; `credentials` reads
credentials out of a request the way Envoy's api_key_auth and jwt_authn filters do. No sockets,
no clock reads (the caller passes `now`).
"""

from poolgate.auth.authenticator import Authenticated, Authenticator
from poolgate.auth.errors import AccessDenied, AuthenticationFailed
from poolgate.auth.spec import SecuritySpec

__all__ = ["AccessDenied", "Authenticated", "AuthenticationFailed", "Authenticator",
           "SecuritySpec"]
