"""The commands as a library: a run session, profiles, synthesis, the whole `run`, its plan and exports.

`opencharacter.pipeline` keeps the names the CLI, `recipe` and users import; the parts live beside it:
`session` (one command's resources and run identity), `commands` (the stages on a session), `plan`
(`--dry-run`), `batch` (OpenAI Batch API files) and `shards` (`--shard i/N` without Ray).
"""

from opencharacter.pipeline.commands import (
    LoadedSource,
    RecordedPairing,
    check_synthesis,
    dry_run_pipeline,
    dry_run_profiles,
    dry_run_synthesis,
    export_run,
    load_instruction_sources,
    make_profiles,
    profile_stage,
    profiles_on,
    run_pipeline,
    run_profiles,
    run_synthesis,
    select,
    synthesis_on,
    synthesize,
)

__all__ = [
    "LoadedSource",
    "RecordedPairing",
    "check_synthesis",
    "dry_run_pipeline",
    "dry_run_profiles",
    "dry_run_synthesis",
    "export_run",
    "load_instruction_sources",
    "make_profiles",
    "profile_stage",
    "profiles_on",
    "run_pipeline",
    "run_profiles",
    "run_synthesis",
    "select",
    "synthesis_on",
    "synthesize",
]
