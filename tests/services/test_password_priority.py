"""Password hashing yields the CPU to every other request: its threads run at nice 10."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from issuer.services import passwords


def _nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.real_argon2
async def test_hashing_threads_run_at_the_lowest_priority_and_the_loop_does_not() -> None:
    stored = await passwords.hash_password("correct horse battery")
    assert await passwords.verify_password(stored, "correct horse battery") == (True, False)
    loop = asyncio.get_running_loop()
    # The threads that just hashed: every one of the pool's threads was set up alike.
    niceness = await loop.run_in_executor(passwords._pool(), _nice_of_this_thread)
    assert niceness == passwords.LOGIN_NICE == 10
    assert _nice_of_this_thread() < 10  # the event loop's thread keeps its own
