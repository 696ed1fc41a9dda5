"""What a stage is: a picklable callable `stage(item, generate, first_attempt) -> record`.

These types sit below the engine and the executors (stages import nothing that runs calls), so a
stage stays plain data plus code: an executor ships it, with the `BackendConfig` and a shard of
work items, to another process, where that process's engine supplies `generate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from opencharacter.records import ChatRequest, Completion

Payload = TypeVar("Payload")
Payload_contra = TypeVar("Payload_contra", contravariant=True)
Record_co = TypeVar("Record_co", bound=BaseModel, covariant=True)
T = TypeVar("T")


@dataclass(frozen=True)
class WorkItem(Generic[Payload]):
    """One unit of a stage's work. `id` is the record id (resume skips ids the store holds);
    `sort_key` orders the output files, so they never depend on which call finished first."""

    id: str
    sort_key: str
    payload: Payload


class Generate(Protocol):
    """What an executor hands a stage: the engine's `generate_parsed`, one structured call.

    Calls until `parse` accepts a completion (at most `max_attempts`, numbered from `first_attempt`
    so that a retried item makes fresh calls) and returns the parsed value and the attempts used.
    `variant` > 0 asks for an independent sample of the same request (its own cache key and seed):
    candidate c of `synthesis.candidates` passes c.
    Raises `ParseError` when every attempt was invalid and `BackendError` when a call failed.
    """

    async def __call__(
        self,
        request: ChatRequest,
        parse: Callable[[Completion], T],
        *,
        prompt_id: str,
        max_attempts: int,
        first_attempt: int = 0,
        variant: int = 0,
    ) -> tuple[T, int]: ...


class Stage(Protocol[Payload_contra, Record_co]):
    """A picklable callable that turns one work item into one record, through `generate` only."""

    name: str
    """The store's stage name: records and failures are filed under it (e.g. `profiles`)."""
    max_attempts: int
    """Tries per call before the item is recorded as failed (used for its attempt count)."""

    async def __call__(self, item: WorkItem[Payload_contra], generate: Generate, first_attempt: int) -> Record_co: ...
