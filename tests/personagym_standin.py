"""A stand-in PersonaGym checkout (our own placeholder texts in PersonaGym's layout and slots) and a
recording OpenAI-compatible server on 127.0.0.1 that keeps every request body exactly as received.

The recording server is plain `http.server`, not `opencharacter serve`'s app: that one validates
requests as our server does (no `top_p: 0`, no `stop`), while this one must take whatever a client
sends, as OpenAI does, so the test sees the bodies unchanged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TASKS = ["Expected Action", "Toxicity", "Linguistic Habits", "Persona Consistency", "Action Justification"]
JUDGE_SYSTEM = "STAND-IN JUDGE SYSTEM\n"
# Placeholder texts with PersonaGym's slots; a newline and quotes, so the list-as-text insertion shows.
RUBRIC = "RUBRIC {task}\nPersona: {{persona}}\nQ: {{question}}\nA: {{response}}\nExamples:\n{{score_example}}\n"
UTILS = """
def openai_chat_gen(input_prompt=None, persona=None):
    if persona:
        persona_prompt = f"Play {persona}. Stay in role."
        message = [{"role": "system", "content": persona_prompt}]


def open_character_stand_in(input_prompt, persona=None):
    if persona:
        sys_prompt = "You are a stand-in character.\\n\\n"
        sys_prompt += f"# Who\\n{persona}\\n\\n"
        sys_prompt += "Keep to it. "
        sys_prompt += "Be kind."
    else:
        sys_prompt = "Unused."
"""


def make_checkout(root: Path, personas: list[str], per_task: int, with_personas_file: bool = True) -> Path:
    for task in TASKS:
        write(root / "rubrics" / f"{task}.txt", RUBRIC.format(task=task))
    write(root / "prompts/rubric_grading/sys_prompt.txt", JUDGE_SYSTEM)
    write(root / "prompts/rubric_grading/prompt.txt", "GRADE EACH\n(1) Evaluation:\n\nRubrics:\n{rubrics}\n")
    write(root / "prompts/score_examples/prompt.txt", "EX persona={persona}\nquestion={question}\nrubric={rubric}")
    write(root / "prompts/score_examples/examples.txt", "MAKE EXAMPLES\nRubrics:\n{rubrics}")
    write(root / "code/utils.py", UTILS)
    if with_personas_file:
        write(root / "code/personas.py", f"benchmark_personas = {personas!r}\n")
    for persona in personas:
        questions = {task: [f"{task} q{i} for {persona[:12]}, isn't it?" for i in range(per_task)] for task in TASKS}
        write(root / "questions/benchmark-v1" / f"{persona}.json", json.dumps(questions))
    return root


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


Reply = Callable[[dict], str]


@contextmanager
def recording_server(reply: Reply) -> Iterator[tuple[str, list[dict]]]:
    """Yields (base URL ending in /v1, the list every request body is appended to)."""
    bodies: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                bodies.append(body)
            text = reply(body)
            out = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", bodies
    finally:
        server.shutdown()
        server.server_close()
