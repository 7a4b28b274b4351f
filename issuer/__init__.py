"""issuer: an async token issuer with rotating signing keys and an offline-verifiable JWKS."""

__version__ = "0.1.0"
