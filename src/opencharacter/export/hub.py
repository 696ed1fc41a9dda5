"""Publishing a run (a dataset) or a trained model to the Hugging Face Hub with `huggingface_hub`.

What goes up is chosen by `allow_patterns` (what users publish: cards, JSONL, Parquet, character
cards; weights, tokenizer, GGUF) and `ignore_patterns` (never the store, locks, shard stores,
checkpoints or caches), and the dry run lists exactly those files, through the same filter
`upload_folder` applies. Repositories are created private unless asked otherwise. The token is
huggingface_hub's own (`HF_TOKEN`, or `hf auth login`), or the variable `--token-env` names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from opencharacter import __version__
from opencharacter.errors import BackendError, ConfigError, MissingDependencyError

RepoType = Literal["dataset", "model"]
DATASET_PATTERNS = [
    "README.md",
    "characters.jsonl",
    "dialogues.jsonl",
    "failures.jsonl",
    "candidates.jsonl",
    "preferences.jsonl",
    "exports/*",
    "filtered/*.jsonl",
    "filtered/*.json",
]
MODEL_PATTERNS = [
    "README.md",
    "*.safetensors",
    "adapter_config.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "loss.png",
    "split.json",
    "loss_history.json",
    "gguf/*.gguf",
    "*.gguf",
]
# Never uploaded, whatever the patterns say: the run store and its WAL, locks, shard stores,
# training checkpoints, caches, hidden files. (`opencharacter.json` records local paths.)
IGNORE_PATTERNS = [
    "*.sqlite",
    "*.sqlite-*",
    "*.lock",
    "*.tmp",
    "shards/*",
    "checkpoints/*",
    "*/checkpoint-*",
    ".*",
    "*/.*",
    "*.cache/*",
    "__pycache__/*",
    "opencharacter.json",
    "merged/*",
]


@dataclass(frozen=True)
class PushPlan:
    folder: Path
    repo_id: str
    repo_type: RepoType
    private: bool
    files: list[tuple[str, int]]
    """(path in the repository, bytes) of every file that goes up."""

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise MissingDependencyError("huggingface_hub", "local") from None
    return huggingface_hub


def check_repo_id(repo_id: str) -> str:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or repo_id != repo_id.strip():
        raise ConfigError(f"--repo {repo_id!r}: a Hub repository is named owner/name (your user or organisation)")
    return repo_id


def plan_push(folder: Path, repo_id: str, repo_type: RepoType, private: bool = True) -> PushPlan:
    """The files `push` would upload from `folder`, chosen exactly as `upload_folder` will choose them."""
    from huggingface_hub.utils import filter_repo_objects

    check_repo_id(repo_id)
    patterns = DATASET_PATTERNS if repo_type == "dataset" else MODEL_PATTERNS
    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    chosen = filter_repo_objects(local, allow_patterns=patterns, ignore_patterns=IGNORE_PATTERNS)
    files = [(name, (folder / name).stat().st_size) for name in chosen]
    if not files:
        raise ConfigError(
            f"{folder}: nothing to upload (no {'run files' if repo_type == 'dataset' else 'model files'})"
        )
    return PushPlan(folder, repo_id, repo_type, private, files)


def token_from(token_env: str | None) -> str | None:
    """The token in `token_env`, or None to let huggingface_hub find its own (HF_TOKEN, login)."""
    if token_env is None:
        return None
    token = os.environ.get(token_env)
    if not token:
        raise ConfigError(f"--token-env {token_env}: that environment variable is not set")
    return token


def upload(plan: PushPlan, token: str | None = None, commit_message: str | None = None) -> str:
    """Create the repository (private unless the plan says otherwise) and upload the plan's files;
    returns the commit URL. Hub errors are one line (BackendError, exit 1)."""
    hub = _hub()
    from huggingface_hub.errors import HfHubHTTPError

    api = hub.HfApi(token=token)
    patterns = DATASET_PATTERNS if plan.repo_type == "dataset" else MODEL_PATTERNS  # the dry run's filter
    try:
        api.create_repo(plan.repo_id, repo_type=plan.repo_type, private=plan.private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=plan.repo_id,
            repo_type=plan.repo_type,
            folder_path=plan.folder,
            allow_patterns=patterns,
            ignore_patterns=IGNORE_PATTERNS,
            commit_message=commit_message or f"opencharacter {__version__}: upload {plan.folder.name}",
        )
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        hint = " (log in with `hf auth login`, or set HF_TOKEN / --token-env)" if status in (401, 403) else ""
        raise BackendError(
            f"the Hub refused the upload to {plan.repo_id}: {str(exc).splitlines()[0]}{hint}", status
        ) from None
    except ValueError as exc:  # the Hub rejected the card's metadata, or answered something unreadable
        raise BackendError(f"the Hub rejected the upload to {plan.repo_id}: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise BackendError(f"could not reach the Hub to upload {plan.repo_id} ({exc})") from None
    return str(getattr(commit, "commit_url", commit))


def hub_url(plan: PushPlan) -> str:
    from huggingface_hub import constants

    prefix = "datasets/" if plan.repo_type == "dataset" else ""
    return f"{constants.ENDPOINT}/{prefix}{plan.repo_id}"


def push_run(
    run: Path,
    repo_id: str,
    *,
    private: bool = True,
    dry_run: bool = False,
    license: str | None = None,
    token_env: str | None = None,
) -> tuple[PushPlan, str | None]:
    """Upload a run directory as a dataset repository; (plan, commit URL or None for a dry run).

    The run is locked meanwhile (no command changes it half-way), and its cards are rewritten
    first, with `license` when given (kept for later cards), so what goes up is current.
    """
    from opencharacter.export.card import CARD_META, write_card
    from opencharacter.store import RunStore
    from opencharacter.store.lock import RunLock
    from opencharacter.store.run_store import STORE_FILE

    check_repo_id(repo_id)
    if not (run / STORE_FILE).is_file():
        raise ConfigError(f"--run {run}: not a run directory (no {STORE_FILE})")
    token = None if dry_run else token_from(token_env)
    with RunLock(run, "push"):
        if not dry_run:
            store = RunStore(run)
            try:
                if license:
                    store.set_meta(CARD_META, {**(store.get_meta(CARD_META) or {}), "license": license})
                write_card(store)
            finally:
                store.close()
        plan = plan_push(run, repo_id, "dataset", private)
        return plan, None if dry_run else upload(plan, token)


def push_model(
    model_dir: Path,
    repo_id: str,
    *,
    private: bool = True,
    dry_run: bool = False,
    license: str | None = None,
    token_env: str | None = None,
) -> tuple[PushPlan, str | None]:
    """Upload a `train --out` directory (adapter or weights, tokenizer, card, GGUF files) as a model repository."""
    from opencharacter.train.report import refresh_model_card

    check_repo_id(repo_id)
    if not model_dir.is_dir():
        raise ConfigError(f"--model {model_dir}: no such model directory")
    token = None if dry_run else token_from(token_env)
    if not dry_run:
        refresh_model_card(model_dir, license=license)
    plan = plan_push(model_dir, repo_id, "model", private)
    return plan, None if dry_run else upload(plan, token)
