"""Backpressure: at most `active` requests at the backend, `waiting` more in line, the rest refused.

Without a bound, 1,000 concurrent clients all queue inside the server (each holding its body and a
connection) and every one of them times out together. Refusing early with 429 and `Retry-After`
lets clients back off (the openai backend and the official client both honour it), and a request
is counted from the moment it arrives, before its body is read, so refused ones cost nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Overloaded(Exception):
    """The server has `active + waiting` requests already; answer 429 with Retry-After."""


class Admission:
    def __init__(self, active: int, waiting: int) -> None:
        self.capacity = active + waiting
        self.inside = 0
        self.generating = 0
        self._slots = asyncio.Semaphore(active)

    @property
    def waiting(self) -> int:
        return self.inside - self.generating

    @asynccontextmanager
    async def enter(self) -> AsyncIterator[None]:
        """Count a request in from its arrival (reading, parsing, waiting, generating)."""
        if self.inside >= self.capacity:
            raise Overloaded
        self.inside += 1
        try:
            yield
        finally:
            self.inside -= 1

    @asynccontextmanager
    async def backend_slot(self) -> AsyncIterator[None]:
        """One of the `active` places at the backend, waited for in arrival order."""
        async with self._slots:
            self.generating += 1
            try:
                yield
            finally:
                self.generating -= 1
