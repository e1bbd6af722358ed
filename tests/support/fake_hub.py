"""A Hugging Face Hub on 127.0.0.1 for tests, and a prepared hub cache: no test touches the network.

`FakeHub` implements the few endpoints the hub client uses to push a folder in one commit (create a
repository, validate a README's metadata, ask each file's upload mode, commit with the files inline) and to download a snapshot (repository
info, its file tree, file heads and bodies). Every file is answered as a "regular" (non-LFS) upload, which the real Hub accepts
for small files too, so no storage backend is needed. `cache_snapshot` lays files out as the client's cache
does, for offline runs (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


def _oid(data: bytes) -> str:
    """A file's id as git computes it for a blob (what the Hub reports for a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Model repositories in memory: ``repos[repo_id] = {"sha": commit, "files": {path: bytes}}``."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, data, status: int = 200):
                self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def do_POST(self):  # noqa: N802 (http.server's name)
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"POST {path}")
                if path == "/api/repos/create":
                    data = json.loads(self._body())
                    repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                    hub.repos.setdefault(repo_id, {"sha": "0" * 40, "files": {}})
                    return self._json({"url": f"{hub.endpoint}/{repo_id}"})
                if path == "/api/validate-yaml":  # the client checks a README's metadata before committing it
                    self._body()
                    return self._json({"errors": [], "warnings": []})
                parts = path.split("/")  # /api/models/{owner}/{name}/{preupload|commit}/{revision}
                if len(parts) >= 7 and parts[1:3] == ["api", "models"]:
                    repo_id, action = f"{parts[3]}/{parts[4]}", parts[5]
                    if action == "preupload":
                        files = json.loads(self._body())["files"]
                        modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                        return self._json({"files": modes})
                    if action == "commit":
                        repo = hub.repos[repo_id]
                        for line in self._body().decode().splitlines():
                            item = json.loads(line)
                            if item["key"] == "file":
                                repo["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        digest = hashlib.sha1()
                        for name in sorted(repo["files"]):
                            digest.update(name.encode() + repo["files"][name])
                        repo["sha"] = digest.hexdigest()
                        url = f"{hub.endpoint}/{repo_id}/commit/{repo['sha']}"
                        return self._json({"commitUrl": url, "commitOid": repo["sha"], "pullRequestUrl": None})
                self._send(404)

            def _get(self, head: bool):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"{'HEAD' if head else 'GET'} {path}")
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                    repo = hub.repos.get(f"{parts[2]}/{parts[3]}")
                    if repo is None:
                        return self._json({"error": "Repository not found"}, 404)
                    files = sorted(repo["files"].items())
                    if parts[4] == "tree":
                        return self._json(
                            [{"type": "file", "path": n, "size": len(d), "oid": _oid(d)} for n, d in files]
                        )
                    siblings = [{"rfilename": name, "size": len(data)} for name, data in files]
                    return self._json({"id": f"{parts[2]}/{parts[3]}", "sha": repo["sha"], "siblings": siblings})
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo = hub.repos.get(f"{parts[0]}/{parts[1]}")
                    name = "/".join(parts[4:])
                    if repo is None or name not in repo["files"]:
                        return self._send(404, headers={"X-Error-Code": "EntryNotFound"}, head=head)
                    data = repo["files"][name]
                    headers = {"X-Repo-Commit": repo["sha"], "ETag": f'"{_oid(data)}"'}
                    return self._send(200, data, headers, head=head)
                self._send(404, head=head)

            def do_GET(self):  # noqa: N802
                self._get(head=False)

            def do_HEAD(self):  # noqa: N802
                self._get(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def cache_snapshot(cache: Path, repo_id: str, files: dict[str, Path], revision: str, refs=("main",)) -> Path:
    """Copy ``files`` (name in the repository -> local file or directory) into a hub cache as the snapshot
    ``revision`` of model ``repo_id``, with ``refs`` (branches or tags) pointing at it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    for name, source in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, target)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(revision)
    return snapshot
