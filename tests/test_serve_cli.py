"""`opencharacter serve` as users start it: refusals before anything loads, and a key-protected
server answering the official client (a real process, a real socket on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

openai = pytest.importorskip("openai")

KEY = "sk-serve-cli-test-0123456789"


def run(*args, env=None):
    done = subprocess.run(
        [sys.executable, "-m", "opencharacter", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, done.stderr.strip().splitlines()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_listening_beyond_this_machine_without_a_key_is_refused(host):
    code, lines = run("--backend", "fake", "--host", host)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: --host {host} listens") and "--auth-key-env" in lines[0]


def test_a_named_key_variable_that_is_not_set_is_refused():
    code, lines = run("--backend", "fake", "--auth-key-env", "OC_SERVE_UNSET_KEY", env={"OC_SERVE_UNSET_KEY": ""})
    assert code == 2 and lines == [
        "error: --auth-key-env OC_SERVE_UNSET_KEY: that environment variable is not set or empty"
    ]


def test_bad_limits_are_one_line_errors():
    code, lines = run("--backend", "fake", "--max-body", "lots")
    assert code == 2 and len(lines) == 1 and "max_body" in lines[0] and "not a size" in lines[0]
    code, lines = run("--backend", "fake", "--allowed-origins", "evil.example")
    assert code == 2 and len(lines) == 1 and "scheme://host[:port]" in lines[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_key_protected_server_answers_the_official_client_only_with_the_key():
    port = _free_port()
    env = {**os.environ, "OC_SERVE_KEY": KEY}
    command = [sys.executable, "-m", "opencharacter", "serve", "--backend", "fake", "--model", "ada"]
    command += ["--port", str(port), "--auth-key-env", "OC_SERVE_KEY", "--served-model-name", "ada"]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        banner = server.stderr.readline()
        assert "serving ada at" in banner and "clients must send the key" in banner
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 60
        while True:  # the banner comes just before the socket opens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        keyed = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=30)
        answer = keyed.chat.completions.create(model="ada", messages=[{"role": "user", "content": "Hi there"}])
        assert answer.choices[0].message.content == "[assistant] Hi there"
        streamed = keyed.chat.completions.create(
            model="ada", messages=[{"role": "user", "content": "Hi there"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "[assistant] Hi there"
        assert [m.id for m in keyed.models.list()] == ["ada"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0, timeout=30).chat.completions.create(
                model="ada", messages=[{"role": "user", "content": "Hi"}]
            )
        with pytest.raises(openai.NotFoundError):
            keyed.chat.completions.create(model="gpt-9-does-not-exist", messages=[{"role": "user", "content": "Hi"}])
    finally:
        server.terminate()
        server.wait(30)
