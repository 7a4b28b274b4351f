"""Password hashing with argon2id (RFC 9106), always off the event loop.

argon2-cffi's default parameters (RFC 9106's second recommended option at the
time of writing) cost tens of milliseconds and 64 MiB per hash, so hashing and
verifying run in a small thread pool bounded by the core count: a burst of
logins queues there instead of stalling every other request or exhausting
memory. The hashing threads run at a lower CPU priority (nice 10), so a flood of logins
takes only the CPU that other requests leave over: JWKS, token and introspection
requests keep their latency while logins queue. Passwords are never truncated;
longer than ``MAX_PASSWORD`` is refused before any hashing, so an attacker cannot
make us hash megabytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from issuer.cpus import available_cpus
from issuer.errors import InvalidRequestError

MAX_PASSWORD = 1024
# The hashing threads' nice value. Against a busy nice-0 thread that is a tenth of its
# share: the event loop gets the CPU back on waking (a 2 ms timer's p99 lateness went
# from 26 ms at nice 0 to 8 ms, as at nice 19), and logins still get somewhere on a
# machine busy with other work (at nice 19 they crawled there).
LOGIN_NICE = 10
MIN_NEW_PASSWORD = 8


@functools.cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    # Built on first use, not at import; shared by every event loop of the process. One
    # thread per CPU this process may use (not the node's count: see issuer/cpus.py), so
    # hashes in flight, at 64 MiB each, stay within what the pod was sized for.
    return ThreadPoolExecutor(
        max_workers=available_cpus(), thread_name_prefix="argon2", initializer=_yield_cpu
    )


def _yield_cpu() -> None:
    # Linux keeps a nice value per thread, and argon2's lane threads inherit this one's:
    # under contention the event loop thread (nice 0) runs first. Raising one's own nice
    # value needs no privilege; where it cannot be set, hashing runs at normal priority.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOGIN_NICE)


@functools.cache
def _dummy_hash() -> str:
    return _hasher().hash("not the password of anyone")


def check_length(password: str) -> None:
    if len(password) > MAX_PASSWORD:
        raise InvalidRequestError(f"a password is at most {MAX_PASSWORD} characters")


def check_new_password(password: str) -> None:
    check_length(password)
    if len(password) < MIN_NEW_PASSWORD:
        raise InvalidRequestError(f"a password is at least {MIN_NEW_PASSWORD} characters")


def _hash(password: str) -> str:
    return _hasher().hash(password)


async def hash_password(password: str) -> str:
    check_length(password)
    return await asyncio.get_running_loop().run_in_executor(_pool(), _hash, password)


def _verify(stored: str | None, password: str) -> tuple[bool, bool]:
    hasher = _hasher()
    if stored is None:
        # No such user: the same work as a real check, so timing tells nothing.
        with contextlib.suppress(VerificationError):
            hasher.verify(_dummy_hash(), password)
        return False, False
    try:
        hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return True, hasher.check_needs_rehash(stored)


async def verify_password(stored: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs_rehash); ``stored`` None verifies against a dummy hash."""
    check_length(password)
    return await asyncio.get_running_loop().run_in_executor(_pool(), _verify, stored, password)


async def warm_up() -> None:
    """Compute the dummy hash now, so the first unknown-user login is not faster or slower."""
    await asyncio.get_running_loop().run_in_executor(_pool(), _dummy_hash)
