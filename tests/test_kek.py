"""The key-encryption key: created 0600 on first start, a list that can rotate."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from issuer.config import Settings
from issuer.context import Context
from issuer.errors import ConfigError
from issuer.jose.keys import KeyUnwrapError, unwrap_private_key, wrap_private_key
from issuer.kek import KeyEncryptionKeys, load_kek
from issuer.keyring import Keyring
from issuer.services.keys import KeyService


def test_kek_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    settings = Settings(kek_file=tmp_path / "keys" / "kek.json")
    first = load_kek(settings)
    mode = stat.S_IMODE(os.stat(settings.kek_file).st_mode)
    assert mode == 0o600
    assert load_kek(settings).keys == first.keys
    assert first.keys[0].hex() not in repr(first)
    assert settings.kek_file.read_text().split('"')[3] not in repr(first)


def test_a_corrupt_kek_file_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    path.write_text("{not json")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"^ISSUER_KEK_FILE: .* is not "):
        load_kek(Settings(kek_file=path))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620])
def test_a_kek_file_open_to_group_or_others_stops_start_up(tmp_path: Path, mode: int) -> None:
    settings = Settings(kek_file=tmp_path / "kek.json")
    load_kek(settings)  # a good file, 0600
    settings.kek_file.chmod(mode)
    with pytest.raises(ConfigError) as info:
        load_kek(settings)
    assert str(info.value) == (
        f"ISSUER_KEK_FILE: {settings.kek_file} is open to group or others "
        f"(mode {mode:04o}): chmod 600 it"
    )


def test_a_kek_file_with_a_short_key_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    short = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()  # 128 bits
    path.write_text(json.dumps({"keys": [short]}))
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"^ISSUER_KEK_FILE: .*\(each key 256 bits\)$"):
        load_kek(Settings(kek_file=path))
    with pytest.raises(ConfigError, match=r"^ISSUER_KEK: each key must be 32 bytes \(256 bits\)"):
        Settings.from_env({"ISSUER_KEK": short})


def test_wrapping_binds_the_kid() -> None:
    kek = os.urandom(32)
    wrapped = wrap_private_key(b"private", kek, "kid-a")
    assert unwrap_private_key(wrapped, kek, "kid-a") == b"private"
    with pytest.raises(KeyUnwrapError):
        unwrap_private_key(wrapped, kek, "kid-b")  # swapped onto another row
    with pytest.raises(KeyUnwrapError):
        unwrap_private_key(wrapped, os.urandom(32), "kid-a")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"kek": (b"\x01" * 32,)}


async def test_private_keys_are_stored_wrapped_never_plain(ctx: Context) -> None:
    for record in await ctx.store.list_keys():
        assert record.private_wrapped is not None
        assert b"PRIVATE KEY" not in record.private_wrapped
        assert b"-----BEGIN" not in record.private_wrapped


async def test_kek_rotation_new_first_old_still_unwraps_then_rewrap(ctx: Context) -> None:
    old = load_kek(ctx.settings)
    rotated = KeyEncryptionKeys((b"\x02" * 32, *old.keys))
    # This worker restarted with the new KEK first and the old one still listed.
    cache = Keyring(ctx.store, ctx.settings, rotated, ctx.clock)
    await cache.load()
    signer = cache.signer(ctx.clock.now())
    assert signer.kid == ctx.keyring.signer(ctx.clock.now()).kid
    keys = KeyService(ctx.store, cache, ctx.settings, rotated, ctx.clock)
    count = await keys.rewrap(actor="test")
    assert count == 2
    for record in await ctx.store.list_keys():
        assert record.kek_id == rotated.current_id
    # The old KEK can now be dropped.
    only_new = Keyring(ctx.store, ctx.settings, KeyEncryptionKeys((b"\x02" * 32,)), ctx.clock)
    await only_new.load()
    assert only_new.signer(ctx.clock.now()).kid == signer.kid
