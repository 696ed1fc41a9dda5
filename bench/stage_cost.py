"""CPU per call of the stage side alone, and of a whole local run on the fake backend.

Part 1 runs the real stages (profiles, generate, rewrite) on N items with a `generate` that parses
a canned completion: what is left is exactly the stage side (items, request building, prompt
rendering, parsing, record building). Part 2 runs profiles and both strategies through a
`RunSession` and the local executor against the fake backend: the whole client (executor, engine,
store and the fake backend itself) per call, and the process's peak RSS.

    python bench/stage_cost.py                       # 3000 stage calls; 1000 instructions x 3 characters
    python bench/stage_cost.py --items 10000 --instructions 8000 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import resource
import tempfile
import time
from pathlib import Path

from opencharacter.backends.fake import fake_value
from opencharacter.config import BackendConfig, ProfilesConfig, SynthesisConfig
from opencharacter.pipeline import make_profiles, synthesize
from opencharacter.pipeline.session import RunSession, execute
from opencharacter.records import Character, ChatMessage, Completion, Instruction, Persona, Profile, Sampling
from opencharacter.stages.dialogues import DialogueStage, dialogue_items
from opencharacter.stages.profiles import PROFILE_SCHEMA, ProfileStage, profile_items

PROFILE_TEXT = json.dumps(fake_value(PROFILE_SCHEMA, "bench", PROFILE_SCHEMA))


class CannedGenerate:
    """Answers every call with valid output, without an engine: only the stage's own work is left."""

    calls = 0

    async def __call__(self, request, parse, *, prompt_id, max_attempts, first_attempt=0):
        self.calls += 1
        schema = request.response_schema
        if schema and "answers" in schema["properties"]:
            count = schema["properties"]["answers"]["minItems"]
            text = json.dumps({"answers": ["An answer in character, long enough to be kept."] * count})
        else:
            text = PROFILE_TEXT if schema else "An answer in character."
        return parse(Completion(text=text)), 1


def personas(count: int) -> list[Persona]:
    return [
        Persona(persona=f"A lighthouse keeper number {i} who collects sea glass and writes letters.")
        for i in range(count)
    ]


def instructions(count: int) -> list[Instruction]:
    made = []
    for i in range(count):
        turns = [
            ChatMessage(role="user", content=f"Explain idea number {i} in two sentences."),
            ChatMessage(role="assistant", content=f"Idea {i} is simple. It is explained right here, plainly."),
        ]
        made.append(Instruction(question_id=Instruction.make_id(turns), source="bench", turns=turns))
    return made


async def stage_side(count: int) -> dict[str, float]:
    people, asked = personas(count), instructions(count)
    profile = Profile.model_validate(json.loads(PROFILE_TEXT))
    cast = [
        Character(character_id=p.character_id, persona=p.persona, character=profile.render(), profile=profile,
                  model="bench", prompt_version="profile@v1")
        for p in people[:50]
    ]  # fmt: skip
    profile_stage = ProfileStage(Sampling(), 3, "bench")
    dialogue_stage = DialogueStage(SynthesisConfig(), "bench")
    results = {}

    def paired():
        return ((i, question, [cast[i % 50]]) for i, question in enumerate(asked))

    for label, stage, items in (
        ("profiles", profile_stage, lambda: profile_items(people)),
        ("generate", dialogue_stage, lambda: dialogue_items(paired(), "generate")),
        ("rewrite", dialogue_stage, lambda: dialogue_items(paired(), "rewrite")),
    ):
        generate = CannedGenerate()
        started = time.process_time()
        for item in items():
            await stage(item, generate, 0)
        results[label] = 1000 * (time.process_time() - started) / generate.calls
    return results


def whole_run(count: int) -> tuple[int, float]:
    asked = instructions(count)
    with tempfile.TemporaryDirectory() as tmp:
        session = RunSession(Path(tmp) / "run", BackendConfig(backend="fake", concurrency=64), "bench", False)

        async def steps() -> None:
            await make_profiles(session, personas(100), ProfilesConfig())
            await synthesize(session, asked, ["generate", "rewrite"], SynthesisConfig(per_instruction=3))

        started = time.process_time()
        execute(session, steps)
        return session.stats.new_calls, 1000 * (time.process_time() - started) / max(1, session.stats.new_calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000, help="items per stage in part 1")
    parser.add_argument("--instructions", type=int, default=1000, help="instructions in part 2 (x3 characters x2)")
    parser.add_argument("--profile", action="store_true", help="print the top of a CPU profile of part 1")
    args = parser.parse_args()
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    if profiler:
        profiler.enable()
    for label, ms in asyncio.run(stage_side(args.items)).items():
        print(f"stage side  {label:<9} {ms:.3f} ms CPU per call")
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    calls, ms = whole_run(args.instructions)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"whole run   {calls} calls, {ms:.3f} ms CPU per call (executor, engine, store, fake backend); "
          f"peak RSS {peak:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
