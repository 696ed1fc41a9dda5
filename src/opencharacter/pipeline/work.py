"""A command's stages, built once: each with its settings check, its work items and its pairing.

The command itself, its dry run (`plan.py`) and its batch files (`batch.py`) all run the same
stages over the same items; this is the one place that builds them, so the three cannot drift
apart (the dry run used to skip the seed refusal the command made, and the batch export had its
own copy of the pairing). A command builds its work once, checks it against the run's identity,
and then runs it.

Characters are read from the store by id when an item runs (`StoredCharacters`): the pairing
needs only the sorted ids of the run's characters, so a 20k-character run holds 20k ids, not 20k
profiles, and a rerun that skips every item reads none.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from opencharacter.config import ProfilesConfig, SynthesisConfig
from opencharacter.errors import ConfigError
from opencharacter.executors import WorkItem
from opencharacter.records import Character, Instruction, Persona, Strategy
from opencharacter.stages import pairing
from opencharacter.stages.dialogues import DialogueStage, Pairing, applies, dialogue_items
from opencharacter.stages.profiles import STAGE as PROFILES
from opencharacter.stages.profiles import ProfileStage, profile_items
from opencharacter.store import RunStore
from opencharacter.store.identity import RunIdentity

CHARACTER_CACHE = 256
"""Characters kept in memory while dialogues are made (an LRU): a few pages' worth, not the run."""
PAIRING_CHUNK = 128
"""Instructions whose recorded pairings are read in one query."""


class StoredCharacters:
    """`lookup(character_id) → Character`, read from the run store by id and kept in a small LRU.

    `fallback` answers for ids the store does not hold (a dry run's characters still to be made).
    """

    def __init__(
        self,
        store: RunStore | None,
        fallback: Callable[[str], Character] | None = None,
        size: int = CHARACTER_CACHE,
    ) -> None:
        self.store, self.fallback, self.size = store, fallback, size
        self._cache: OrderedDict[str, Character] = OrderedDict()

    def __call__(self, character_id: str) -> Character:
        found = self._cache.get(character_id)
        if found is not None:
            self._cache.move_to_end(character_id)
            return found
        found = self.store.get_record(PROFILES, character_id, Character) if self.store is not None else None
        if found is None and self.fallback is not None:
            found = self.fallback(character_id)
        if found is None:
            raise ConfigError(f"character {character_id} is paired in this run but has no profile in its store")
        self._cache[character_id] = found
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return found


class RecordedPairing:
    """Each instruction's characters, drawn the first time and then read back from the store.

    What keeps pairing stable as characters are added: an instruction paired when the run had 50
    characters keeps exactly those pairs after profiles for 200 more are made. `record` False draws
    the pairs a command would record without storing them (the dry run, batch export).
    """

    def __init__(
        self,
        store: RunStore | None,
        characters: Sequence[str] | Mapping[str, Character],
        per_instruction: int,
        seed: int,
        *,
        record: bool = True,
        lookup: Callable[[str], Character] | None = None,
    ) -> None:
        self.store = store
        self.pool = sorted(characters)
        self.per_instruction, self.seed, self.record = per_instruction, seed, record
        if lookup is None and isinstance(characters, Mapping):
            lookup = characters.__getitem__
        self.lookup = lookup or StoredCharacters(store)
        pairing.check_pool(len(self.pool), per_instruction)

    def ids_for(self, instruction: Instruction) -> list[str]:
        return self.ids_for_all([instruction])[0]

    def ids_for_all(self, instructions: Sequence[Instruction]) -> list[list[str]]:
        """Each instruction's character ids; the recorded pairings of the lot are read in one query."""
        qids = [instruction.question_id for instruction in instructions]
        recorded = self.store.record_data_among(pairing.STAGE, qids) if self.store is not None else {}
        drawn = []
        for qid in qids:
            kept = json.loads(recorded[qid])["character_ids"] if qid in recorded else []
            ids = pairing.draw(qid, self.pool, self.per_instruction, self.seed, kept)
            if self.record and self.store is not None and len(ids) > len(kept):
                record = pairing.InstructionPairing(question_id=qid, character_ids=ids)
                self.store.put_record(pairing.STAGE, qid, qid, record)
            drawn.append(ids)
        return drawn

    def paired(
        self, instructions: Iterable[Instruction], strategy: Strategy
    ) -> Iterator[tuple[int, Instruction, list[str]]]:
        """(source index, instruction, character ids) for the instructions `strategy` applies to, a
        chunk of instructions at a time."""
        numbered = ((index, i) for index, i in enumerate(instructions) if applies(i, strategy))
        while chunk := list(itertools.islice(numbered, PAIRING_CHUNK)):
            for (index, instruction), ids in zip(chunk, self.ids_for_all([i for _, i in chunk]), strict=True):
                yield index, instruction, ids

    def characters_for(self, instruction: Instruction) -> list[Character]:
        return [self.lookup(character_id) for character_id in self.ids_for(instruction)]


class ProfilesWork:
    """The profile stage of one command."""

    def __init__(self, config: ProfilesConfig, model: str) -> None:
        self.config = config
        self.stage = ProfileStage(config.sampling, config.max_attempts, model, config.prompt_version)

    def total(self, personas: Iterable[Persona]) -> int | None:
        return len(personas) if hasattr(personas, "__len__") else None  # type: ignore[arg-type]

    def check(self, identity: RunIdentity | None, *, record: bool = True) -> None:
        if identity is not None:
            identity.settings(self.stage.name, self.stage.settings, record=record)

    def items(self, personas: Iterable[Persona]) -> Iterator[WorkItem[Persona]]:
        return profile_items(personas)


class SynthesisWork:
    """The dialogue stage of one command, its pairing and its items, for every strategy it makes."""

    def __init__(self, config: SynthesisConfig, model: str, stage: DialogueStage | None = None) -> None:
        self.config, self.model = config, model
        self.stage = stage or DialogueStage(config, model)
        self.pairs: RecordedPairing | None = None

    def check(self, identity: RunIdentity | None, strategies: Sequence[Strategy], *, record: bool = True) -> None:
        """Refuse settings that differ from what the run's dialogues were made with: the pairing
        (seed, characters per instruction) and, per strategy, the prompts and sampling."""
        config = self.config
        if identity is not None:
            identity.pairing(config.seed, config.per_instruction, record=record)
        if config.candidates > 1:  # fail now, not after generating k× the dialogues
            from opencharacter.models.embedder import embedder_path

            embedder_path()
        if identity is not None:
            for strategy in strategies:
                identity.settings(f"{self.stage.name}:{strategy}", self.stage.settings(strategy), record=record)

    def pair(
        self,
        store: RunStore | None,
        *,
        record: bool = True,
        planned: Mapping[str, Callable[[], Character]] | None = None,
    ) -> RecordedPairing:
        """Pair instructions with the run's characters (read by id), plus `planned` ones: characters a
        dry run counts as made (id → a function making a stand-in)."""
        pool = store.record_ids(PROFILES) if store is not None else []
        fallback = None
        if planned:
            pool = sorted(set(pool) | set(planned))
            fallback = lambda character_id: planned[character_id]()  # noqa: E731 - a one-line adapter
        config = self.config
        self.pairs = RecordedPairing(
            store, pool, config.per_instruction, config.seed, record=record, lookup=StoredCharacters(store, fallback)
        )
        return self.pairs

    def items(self, instructions: Iterable[Instruction], strategy: Strategy) -> Iterator[WorkItem[Pairing]]:
        """Every (instruction, paired character, candidate) `strategy` applies to, lazily, in source order."""
        pairs = self.pairs
        if pairs is None:
            raise RuntimeError("SynthesisWork.pair(store) first: the items need the run's characters")
        return dialogue_items(
            pairs.paired(instructions, strategy), strategy, self.config.candidates, lookup=pairs.lookup
        )

    def counts(self, instructions: Iterable[Instruction], strategy: Strategy) -> tuple[int, int]:
        """(instructions, of them those `strategy` applies to), from a scanned file's counts when it has them."""
        total = len(instructions) if hasattr(instructions, "__len__") else None  # type: ignore[arg-type]
        if strategy == "generate" and total is not None:
            return total, total
        answered = getattr(instructions, "fully_answered", None)
        if total is not None and answered is not None:
            return total, answered
        seen = applicable = 0
        for instruction in instructions:
            seen += 1
            applicable += applies(instruction, strategy)
        return seen, applicable

    def items_total(self, applicable: int) -> int:
        return applicable * self.config.per_instruction * self.config.candidates
