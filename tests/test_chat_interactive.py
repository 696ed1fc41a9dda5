"""Interactive `chat` over a real pipe and a real socket: commands, history, and errors that don't end the chat."""

from __future__ import annotations

import json
import subprocess
import sys

from opencharacter.serve.server import Faults, ScriptedResponder, serve_in_thread

SAILOR = "A retired sailor who paints seascapes."
KEEPER = "A lighthouse keeper who collects shells."


def test_interactive_chat_commands_history_and_recoverable_errors(tmp_path):
    seen = []

    class Recording(ScriptedResponder):
        async def __call__(self, payload):
            seen.append(payload)
            return await super().__call__(payload)

    first, second = tmp_path / "first.json", tmp_path / "second.json"
    lines = [
        "Hello there",  # the server answers 500: reported, the chat goes on
        "Hello there",
        f"/save {first}",
        f"/character {KEEPER}",
        "/character Nobody",  # too short to be a persona: reported, the keeper stays
        f"/save {tmp_path / 'missing' / 'dir' / 'x.json'}",  # not writable: reported
        "What do you do?",
        "/reset",
        f"/save {second}",
        "/quit",
        "never read",
    ]
    # Two 500s: the openai backend re-sends a failed call once by itself, so one would not show.
    with serve_in_thread(Recording(faults=Faults(server_errors=2))) as url:
        done = subprocess.run(
            [sys.executable, "-m", "opencharacter", "chat", "--backend", "openai", "--base-url", url,
             "--model", "served", "--character", SAILOR],
            input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "echo: Hello there" in done.stdout and "echo: What do you do?" in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3, done.stderr
    assert "500" in errors[0] and "too short to be a persona" in errors[1] and "x.json" in errors[2]
    assert "(now chatting with character)" in done.stderr and "(history cleared)" in done.stderr

    # The failed call left no trace in the history: one user turn, one answer.
    saved = json.loads(first.read_text())["messages"]
    assert [m["role"] for m in saved] == ["system", "user", "assistant"]
    assert SAILOR in saved[0]["content"] and saved[2]["content"] == "echo: Hello there"
    # After switching, the keeper answers from a fresh history; /reset clears it again.
    assert len(seen) == 4  # the failed call (sent twice), then one per answered message; /quit stopped the rest
    keeper_call = seen[3]["messages"]
    assert KEEPER in keeper_call[0]["content"] and [m["role"] for m in keeper_call] == ["system", "user"]
    after_reset = json.loads(second.read_text())["messages"]
    assert len(after_reset) == 1 and KEEPER in after_reset[0]["content"]


def test_an_untrusted_card_cannot_end_the_chat_or_reach_the_terminal_raw(tmp_path):
    """A broken card is one error line and the chat goes on; escape codes in a card's name (which
    could retitle or rewrite the terminal) are stripped from everything chat prints."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    card = tmp_path / "evil.json"
    evil = "\x1b]0;pwned\x07Evil\x1b[2J Eve"
    data = {"name": evil, "description": "A " + "\x1b[31m" + "red herring.", "first_mes": "Hi."}
    card.write_text(json.dumps({"spec": "chara_card_v2", "spec_version": "2.0", "data": data}))
    lines = [f"/character {broken}", "Still there?", f"/character {card}", "Who are you?", "/quit"]
    with serve_in_thread(ScriptedResponder()) as url:
        done = subprocess.run(
            [sys.executable, "-m", "opencharacter", "chat", "--backend", "openai", "--base-url", url,
             "--model", "served", "--character", SAILOR],
            input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(broken) in errors[0]
    assert "echo: Still there?" in done.stdout and "echo: Who are you?" in done.stdout
    assert "\x1b" not in done.stdout + done.stderr and "\x07" not in done.stdout + done.stderr
    assert "(now chatting with " in done.stderr and "Eve)" in done.stderr  # the name, made harmless
