"""`batch export` → a stand-in for the Batch API → `batch import` → the stage reruns with no new calls."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import read_jsonl

from opencharacter.backends.fake import fake_value
from opencharacter.hashing import canonical_json
from opencharacter.pipeline.batch import ExportResult, import_results, write_files
from opencharacter.sources.bundled import sample_path
from opencharacter.store import RunStore

DEAD = "http://127.0.0.1:1/v1"  # nothing listens there: any real call fails the command
MODEL = ("--backend", "openai", "--model", "gpt-test", "--base-url", DEAD)


def answer_batch(files: list[Path], out: Path, fail: set[str] = frozenset()) -> Path:
    """What OpenAI's Batch API (or `vllm run-batch`) writes for input files: one output line per request."""
    lines = []
    for path in files:
        for request in read_jsonl(path):
            body = request["body"]
            assert request["url"] == "/v1/chat/completions" and body["model"] == "gpt-test"
            assert isinstance(body["seed"], int)
            if request["custom_id"] in fail:
                lines.append({"custom_id": request["custom_id"], "response": None, "error": {"message": "boom"}})
                continue
            format_ = body.get("response_format")
            if format_:
                schema = format_["json_schema"]["schema"]
                text = canonical_json(fake_value(schema, request["custom_id"], schema))
            else:
                text = f"In character: {body['messages'][-1]['content'][:40]}"
            completion = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
            lines.append(
                {"custom_id": request["custom_id"], "response": {"status_code": 200, "body": completion}, "error": None}
            )
    lines.append({"custom_id": "not-ours", "response": {"status_code": 200, "body": completion}, "error": None})
    out.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return out


def new_calls(run: Path) -> int:
    store = RunStore(run)
    try:
        return store.sessions()[-1]["new_calls"]
    finally:
        store.close()


def make_characters(run: Path, tmp_path: Path, run_cli, count: int = 2) -> None:
    """Profiles by one batch round, then `profiles` completing from the cache."""
    personas = ("--personas", sample_path("personas.jsonl"), "--limit", count)
    run_cli("batch", "export", "--run", run, "--stage", "profiles", *personas, *MODEL)
    run_cli("batch", "import", "--run", run, answer_batch([run / "batch" / "profiles-001.jsonl"], tmp_path / "p.jsonl"))
    code, _, err = run_cli("profiles", "--out", run, *personas, *MODEL, "--quiet")
    assert code == 0, err


def test_profiles_round_trip(tmp_path, run_cli):
    run = tmp_path / "run"
    personas = ("--personas", sample_path("personas.jsonl"), "--limit", 3)
    code, out, err = run_cli("batch", "export", "--run", run, "--stage", "profiles", *personas, *MODEL)
    assert code == 0, err
    assert "waiting for 3 calls" in out
    files = sorted((run / "batch").glob("profiles-*.jsonl"))
    assert [f.name for f in files] == ["profiles-001.jsonl"]
    requests = read_jsonl(files[0])
    assert len({r["custom_id"] for r in requests}) == 3
    assert requests[0]["body"]["response_format"]["type"] == "json_schema"

    # One answer fails at the provider: it is reported, not stored, and exported again next time.
    failed = requests[0]["custom_id"]
    output = answer_batch(files, tmp_path / "out.jsonl", fail={failed})
    code, out, err = run_cli("batch", "import", "--run", run, output)
    assert code == 0, err
    assert "stored 2 answers" in out and "1 errors, 1 unknown custom_ids" in out
    code, out, _ = run_cli("batch", "export", "--run", run, "--stage", "profiles", *personas, *MODEL)
    assert "2 complete from the cache, 1 waiting for 1 calls" in out
    assert [r["custom_id"] for r in read_jsonl(run / "batch" / "profiles-001.jsonl")] == [failed]
    code, _, err = run_cli("batch", "import", "--run", run, answer_batch(files, tmp_path / "out2.jsonl"))
    assert code == 0, err
    code, _, err = run_cli("batch", "import", "--run", run, tmp_path / "missing.jsonl")
    assert code == 2 and "missing.jsonl: no such file" in err
    (tmp_path / "bad.jsonl").write_text('{"custom_id": "x"\n[1]\n', encoding="utf-8")
    code, out, _ = run_cli("batch", "import", "--run", run, tmp_path / "bad.jsonl")
    assert code == 0 and "stored 0 answers" in out and "2 malformed lines" in out

    code, _, err = run_cli("profiles", "--out", run, *personas, *MODEL, "--quiet")
    assert code == 0, err
    assert len(read_jsonl(run / "characters.jsonl")) == 3
    assert new_calls(run) == 0

    # The run's teacher is gpt-test now: an export for another model is refused before any file is written.
    code, _, err = run_cli("batch", "export", "--run", run, "--stage", "profiles", *personas, "--backend", "fake")
    assert code == 2 and "holds data made by gpt-test" in err


def test_generate_needs_one_round_per_turn(tmp_path, run_cli, write_jsonl):
    run = tmp_path / "run"
    make_characters(run, tmp_path, run_cli)
    two_turns = write_jsonl("chat.jsonl", [{"conversations": ["Hi there?", "Hello.", "And how are you?", "Fine."]}])
    export = ("batch", "export", "--run", run, "--stage", "generate", "--instructions", two_turns)
    options = ("--per-instruction", 2, *MODEL)
    code, out, err = run_cli(*export, *options)
    assert code == 0, err
    assert "waiting for 2 calls" in out and "2 dialogues have turns left" in out
    round1 = sorted((run / "batch").glob("generate-*.jsonl"))
    assert all(len(r["body"]["messages"]) == 2 for r in read_jsonl(round1[0]))  # system + turn 1
    run_cli("batch", "import", "--run", run, answer_batch(round1, tmp_path / "r1.jsonl"))

    code, out, err = run_cli(*export, *options)
    assert code == 0, err
    assert "waiting for 2 calls" in out and "turns left" not in out
    round2 = read_jsonl(run / "batch" / "generate-001.jsonl")
    assert all(len(r["body"]["messages"]) == 4 for r in round2)  # system, user, assistant, user
    result = import_results(run, [answer_batch([run / "batch" / "generate-001.jsonl"], tmp_path / "r2.jsonl")])
    assert result.stored == 2 and result.unknown == 1

    code, out, _ = run_cli(*export, *options)
    assert "nothing to export" in out
    code, _, err = run_cli("synthesize", "--out", run, "--instructions", two_turns, *options, "--quiet")
    assert code == 0, err
    dialogues = read_jsonl(run / "dialogues.jsonl")
    assert len(dialogues) == 2 and all(len(d["messages"]) == 5 for d in dialogues)
    assert new_calls(run) == 0


def test_rewrite_round_trip(tmp_path, run_cli):
    run = tmp_path / "run"
    make_characters(run, tmp_path, run_cli)
    instructions = ("--instructions", sample_path("instructions.jsonl"), "--limit", 2, "--strategy", "rewrite")
    options = ("--per-instruction", 2, *MODEL)
    code, out, err = run_cli("batch", "export", "--run", run, "--stage", "rewrite", *instructions[:4], *options)
    assert code == 0, err
    assert "waiting for 4 calls" in out and "turns left" not in out
    requests = read_jsonl(run / "batch" / "rewrite-001.jsonl")
    # One answer each: plain-text rewrites, no schema (a session of several answers is structured).
    assert requests and not any("response_format" in r["body"] for r in requests)
    assert all("Original answer:" in r["body"]["messages"][-1]["content"] for r in requests)
    run_cli("batch", "import", "--run", run, answer_batch([run / "batch" / "rewrite-001.jsonl"], tmp_path / "o.jsonl"))
    code, _, err = run_cli("synthesize", "--out", run, *instructions, *options, "--quiet")
    assert code == 0, err
    assert len(read_jsonl(run / "dialogues.jsonl")) == 4
    assert new_calls(run) == 0


def test_files_split_at_the_limits(tmp_path):
    result = ExportResult("generate")
    for n in range(5):
        key = f"k{n}"
        result.requests.append({"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": {}})
        result.index[key] = {"prompt_id": "p", "model": "m"}
    write_files(tmp_path, result, max_requests=2, max_bytes=10**6)
    assert [len(read_jsonl(p)) for p in result.files] == [2, 2, 1]
    line = len(json.dumps(result.requests[0], separators=(",", ":"))) + 1
    again = write_files(tmp_path, ExportResult("generate", requests=result.requests), 100, max_bytes=3 * line)
    assert [len(read_jsonl(p)) for p in again.files] == [3, 2]
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == [
        "generate-001.jsonl", "generate-002.jsonl", "generate-index.json"
    ]  # fmt: skip
    assert set(json.loads((tmp_path / "batch" / "generate-index.json").read_text())) == {f"k{n}" for n in range(5)}
