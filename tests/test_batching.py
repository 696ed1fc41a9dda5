from __future__ import annotations

import asyncio

from opencharacter.backends.batching import MicroBatcher


def test_requests_are_grouped_by_key_and_length_and_all_answered():
    batches: list[list[tuple[str, int]]] = []

    def run_batch(items):
        batches.append(list(items))
        return [f"{group}:{length}" for group, length in items]

    batcher = MicroBatcher(run_batch, batch_size=2, group_of=lambda i: i[0], length_of=lambda i: i[1])

    async def main():
        items = [("a", 10), ("b", 5), ("a", 100), ("a", 11), ("b", 6)]
        return await asyncio.gather(*(batcher.submit(i) for i in items))

    results = asyncio.run(main())
    assert results == ["a:10", "b:5", "a:100", "a:11", "b:6"]
    assert all(len({g for g, _ in batch}) == 1 for batch in batches)  # never mixes groups
    assert batches[0] == [("a", 10), ("a", 11)]  # oldest first, with its nearest-length peer
    assert sorted(len(b) for b in batches) == [1, 2, 2]


def test_a_failing_batch_fails_its_callers_only():
    def run_batch(items):
        if any(i == "boom" for i in items):
            raise RuntimeError("kaput")
        return items

    batcher = MicroBatcher(run_batch, batch_size=4, group_of=lambda i: i, length_of=len)

    async def main():
        return await asyncio.gather(batcher.submit("boom"), batcher.submit("fine"), return_exceptions=True)

    boom, fine = asyncio.run(main())
    assert isinstance(boom, RuntimeError) and fine == "fine"
