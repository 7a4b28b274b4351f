"""The key-encryption key (KEK) list: the first wraps new signing keys, all unwrap.

From ``ISSUER_KEK`` (comma-separated base64url keys) or ``ISSUER_KEK_FILE``
(JSON ``{"keys": [...]}``), which is created with mode 0600 on first use so the
embedded default needs no set-up.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from issuer.config import Settings, parse_kek_list
from issuer.errors import ConfigError
from issuer.jose.keys import KeyUnwrapError, kek_id, unwrap_private_key, wrap_private_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyEncryptionKeys:
    keys: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("ISSUER_KEK: at least one key-encryption key is needed")

    def __repr__(self) -> str:
        return f"KeyEncryptionKeys(ids={self.ids})"

    @property
    def ids(self) -> list[str]:
        return [kek_id(k) for k in self.keys]

    @property
    def current_id(self) -> str:
        return kek_id(self.keys[0])

    def derive(self, purpose: bytes) -> bytes:
        """A 256-bit key for one ``purpose`` from the wrapping KEK (HKDF-SHA256, RFC 5869).

        Not a key that wraps anything: knowing it tells nothing about the KEK.
        """
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"issuer " + purpose)
        return hkdf.derive(self.keys[0])

    def wrap(self, private_pem: bytes, kid: str) -> tuple[bytes, str]:
        return wrap_private_key(private_pem, self.keys[0], kid), self.current_id

    def unwrap(self, wrapped: bytes, wrapped_by: str | None, kid: str) -> bytes:
        for key in self.keys:
            if wrapped_by is None or kek_id(key) == wrapped_by:
                return unwrap_private_key(wrapped, key, kid)
        raise KeyUnwrapError(f"key {kid} was wrapped by KEK {wrapped_by}, which is not configured")


def load_kek(settings: Settings, *, create: bool = True) -> KeyEncryptionKeys:
    if settings.kek:
        return KeyEncryptionKeys(settings.kek)
    path = settings.kek_file
    if not path.exists():
        if not create:
            raise ConfigError(
                f"ISSUER_KEK_FILE: {path} does not exist (issuer serve creates it on first "
                "start; or set ISSUER_KEK)"
            )
        _create_kek_file(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            # Whoever reads the KEK can unwrap every signing key in the database.
            raise ConfigError(
                f"ISSUER_KEK_FILE: {path.absolute()} is open to group or others "
                f"(mode {mode:04o}): chmod 600 it"
            )
        doc = json.loads(path.read_text("utf-8"))
        keys = doc["keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError
        return KeyEncryptionKeys(parse_kek_list(",".join(keys)))
    except OSError as exc:
        raise ConfigError(f"ISSUER_KEK_FILE: cannot read {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f'ISSUER_KEK_FILE: {path} is not {{"keys": ["<base64url 32 bytes>", ...]}} '
            "(each key 256 bits)"
        ) from None


def new_kek() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def _create_kek_file(path: Path) -> None:
    """Write a fresh KEK file (mode 0600) unless another process got there first."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kek-")  # created 0600
        with os.fdopen(fd, "w") as f:
            json.dump({"keys": [new_kek()]}, f)
            f.write("\n")
        try:
            # link() is atomic and refuses to replace: exactly one racing worker wins,
            # and the others then read a complete file.
            os.link(tmp, path)
            log.warning("created a new key-encryption key in %s: back it up", path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"ISSUER_KEK_FILE: cannot create {path}: {exc.strerror}") from None
