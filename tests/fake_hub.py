"""A stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1, for huggingface_hub to talk to.

Point `HF_ENDPOINT` at it and the real `huggingface_hub` client (create_repo, upload_folder,
snapshot_download) runs its real HTTP code against it; every request is recorded. It speaks the
part of the API those calls use: repo creation, preupload (every file "regular": no LFS or Xet
transfer is exercised), ndjson commits, repo info, tree listing, HEAD/GET of resolved files.
Not run against the real Hub.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field

from aiohttp import web

SHA = "0123456789abcdef0123456789abcdef01234567"
_PREFIX = {"datasets": "dataset", "models": "model", "spaces": "space"}


@dataclass
class Repo:
    repo_type: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)


class FakeHub:
    def __init__(self, token: str | None = "hf_fake_token") -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.validated: list[dict] = []
        self.created: list[dict] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- content for downloads -----------------------------------------------------------------
    def add_repo(self, repo_id: str, repo_type: str, files: dict[str, bytes], private: bool = False) -> None:
        self.repos[repo_id] = Repo(repo_type, private, dict(files))

    # -- handlers ------------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        return self.token is None or request.headers.get("Authorization") == f"Bearer {self.token}"

    @staticmethod
    def _denied() -> web.Response:
        return web.json_response({"error": "Invalid credentials in Authorization header"}, status=401)

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        body = await request.json()
        repo_id = f"{body.get('organization') or 'me'}/{body['name']}"
        repo_type = body.get("type") or "model"
        self.created.append(body)
        # huggingface_hub 2.x sends `visibility`, 1.x `private`
        private = bool(body.get("private")) or body.get("visibility") == "private"
        self.repos.setdefault(repo_id, Repo(repo_type, private))
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return web.json_response({"url": f"{self.url}/{prefix}{repo_id}", "name": repo_id})

    def _repo(self, request: web.Request) -> tuple[str, Repo | None]:
        repo_id = f"{request.match_info['ns']}/{request.match_info['name']}"
        return repo_id, self.repos.get(repo_id)

    async def _validate_yaml(self, request: web.Request) -> web.Response:
        """The Hub's README check, in small: front matter that parses, configs with a name and files."""
        import yaml

        body = await request.json()
        self.validated.append(body)
        text = body["content"]
        errors = []
        if text.startswith("---\n") and "\n---" in text[4:]:
            try:
                meta = yaml.safe_load(text[4 : text.index("\n---", 4)]) or {}
            except yaml.YAMLError as exc:
                meta, errors = {}, [{"message": f"YAML: {exc}"}]
            for config in meta.get("configs") or []:
                if not config.get("config_name") or not config.get("data_files"):
                    errors.append({"message": f"config without a name or data_files: {config}"})
        if errors:
            return web.json_response({"errors": errors}, status=400)
        return web.json_response({"errors": [], "warnings": []})

    async def _preupload(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        body = await request.json()
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in body["files"]]
        return web.json_response({"files": files})

    async def _commit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._denied()
        repo_id, repo = self._repo(request)
        if repo is None:
            return web.json_response({"error": "Repository not found"}, status=404)
        lines = [json.loads(line) for line in (await request.read()).splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        added = {}
        for item in lines:
            if item["key"] == "file":
                value = item["value"]
                added[value["path"]] = (
                    base64.b64decode(value["content"])
                    if value.get("encoding") == "base64"
                    else value["content"].encode()
                )
        repo.files.update(added)
        repo.commits.append({"summary": header["summary"], "files": sorted(added)})
        kind = request.match_info["kind"]
        prefix = "" if kind == "models" else f"{kind}/"
        return web.json_response(
            {"commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{SHA}", "commitOid": SHA, "success": True}
        )

    async def _info(self, request: web.Request) -> web.Response:
        repo_id, repo = self._repo(request)
        if repo is None or (repo.private and not self._authorized(request)):
            return web.json_response(
                {"error": "Repository not found"}, status=404, headers={"X-Error-Code": "RepoNotFound"}
            )
        siblings = [{"rfilename": name, "size": len(data)} for name, data in sorted(repo.files.items())]
        return web.json_response({"id": repo_id, "sha": SHA, "private": repo.private, "siblings": siblings})

    async def _tree(self, request: web.Request) -> web.Response:
        _, repo = self._repo(request)
        if repo is None:
            return web.json_response(
                {"error": "Repository not found"}, status=404, headers={"X-Error-Code": "RepoNotFound"}
            )
        entries = [
            {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            for name, data in sorted(repo.files.items())
        ]
        return web.json_response(entries)

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        _, repo = self._repo(request)
        path = request.match_info["path"]
        if repo is None or path not in repo.files:
            return web.json_response(
                {"error": "Entry not found"}, status=404, headers={"X-Error-Code": "EntryNotFound"}
            )
        data = repo.files[path]
        headers = {
            "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
            "X-Repo-Commit": SHA,
            "Content-Length": str(len(data)),
        }
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers)
        return web.Response(body=data, headers=headers)

    @web.middleware
    async def _record(self, request: web.Request, handler):
        self.requests.append((request.method, request.path))
        return await handler(request)

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record], client_max_size=256 * 2**20)
        repo = "/api/{kind:datasets|models|spaces}/{ns}/{name}"
        app.router.add_post("/api/repos/create", self._create)
        app.router.add_post("/api/validate-yaml", self._validate_yaml)
        app.router.add_post(repo + "/preupload/{rev}", self._preupload)
        app.router.add_post(repo + "/commit/{rev}", self._commit)
        app.router.add_get(repo + "/revision/{rev}", self._info)
        app.router.add_get(repo + "/tree/{rev}", self._tree)
        app.router.add_get(repo, self._info)
        for kind in ("datasets/", "spaces/", ""):
            app.router.add_route("*", "/" + kind + "{ns}/{name}/resolve/{rev}/{path:.+}", self._resolve)
        return app

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> FakeHub:
        started = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._runner = web.AppRunner(self._app())
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert started.wait(10), "fake hub did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def env(self, home) -> dict[str, str]:
        """Environment for a subprocess whose huggingface_hub talks to this server (and caches under `home`)."""
        env = {
            "HF_ENDPOINT": self.url,
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_OFFLINE": "0",
        }
        if self.token:
            env["HF_TOKEN"] = self.token
        return env
