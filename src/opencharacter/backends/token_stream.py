"""Tokens from a decoding thread to the caller's event loop, as text: what `Backend.stream` yields
for the in-process transformers backend.

The decode loop (`decode_loop.decode`) runs in a worker thread and hands each streamed row's new
token to its `TokenSink`; the caller's async generator turns tokens into text incrementally and
yields it as it comes. Text is decoded over a short window, as vLLM and TGI do, so a long answer
costs O(length), and a token that ends inside a multi-byte character waits for the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from opencharacter.backends.base import StreamEvent
from opencharacter.records import Completion


class IncrementalDecoder:
    """Text of a growing token sequence, piece by piece; the pieces join to the full decode."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def add(self, token: int) -> str:
        self._ids.append(token)
        decode = self._tokenizer.decode
        before = decode(self._ids[self._prefix : self._read], skip_special_tokens=True)
        after = decode(self._ids[self._prefix :], skip_special_tokens=True)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""  # a special token, or half a character: wait for more
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]


class TokenSink:
    """One streamed row: tokens pushed from the decoding thread, read on the caller's loop.

    `cancelled` is read by the decoding thread: the row leaves the batch at the next step once the
    reader has gone (a client that hung up stops costing decode steps).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = False

    def push(self, token: int) -> None:
        """From the decoding thread."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, ("token", token))
        except RuntimeError:  # the reader's loop is closed: nobody listens any more
            self.cancelled = True

    def settle(self, produced: asyncio.Future[Completion]) -> None:
        """The batch call finished (on the reader's loop, after every token it pushed)."""
        if produced.cancelled():
            self._queue.put_nowait(("error", asyncio.CancelledError()))
        elif produced.exception() is not None:
            self._queue.put_nowait(("error", produced.exception()))
        else:
            self._queue.put_nowait(("done", produced.result()))

    async def events(self, decoder: IncrementalDecoder) -> AsyncIterator[StreamEvent]:
        sent: list[str] = []
        try:
            while True:
                kind, value = await self._queue.get()
                if kind == "token":
                    if piece := decoder.add(value):
                        sent.append(piece)
                        yield StreamEvent(piece)
                elif kind == "error":
                    raise value
                else:
                    text = "".join(sent)
                    # The final text is the one `complete` returns; the pieces are its prefix.
                    tail = value.text[len(text) :] if value.text.startswith(text) else ""
                    yield StreamEvent(tail, value)
                    return
        finally:
            self.cancelled = True
