"""A small Hugging Face Hub emulator on loopback, for tests that push and load for real.

It implements the HTTP endpoints that `huggingface_hub` (create_repo, create_commit /
upload_file, create_tag, repo_info, list_repo_files / tree, paths-info, preupload, LFS batch +
PUT, resolve) and `datasets` (`DatasetDict.push_to_hub`, `load_dataset(repo, config)`) call,
with real git-like semantics: commits with parents, branches, tags, LFS objects by sha256,
git-sha1 blob ids (so unchanged files are no-ops), and the Hub's error codes.

Clients must see `HF_ENDPOINT=<url>` and `HF_HUB_DISABLE_XET=1` before importing
huggingface_hub / datasets (run them in a subprocess, or set the env at conftest import time),
and set `datasets.config.USE_PARQUET_EXPORT = False`.

    with hub_emulator() as (url, state):
        ...  # state.repos[("dataset", "me/x")].files("main") -> {path: bytes}

Faults for reliability tests: `state.fail_next["commit"] = 1` answers the next commit with a
500; `state.delay_s["lfs_put"] = 2.0` slows every LFS upload (room for a SIGKILL).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".pt", ".zip", ".gz", ".npy")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def hub_date(t: float) -> str:
    """The Hub's exact format: huggingface_hub.parse_datetime accepts only this."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Blob:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:  # git blob id (of the pointer for LFS files)
        return git_sha1(lfs_pointer(self.sha256, len(self.data)) if self.lfs else self.data)


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    date: float
    tree: dict[str, Blob]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: float = field(default_factory=time.time)
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        first = Commit(_commit_oid(None, "initial commit", {}), None, "initial commit", self.created, {})
        self.commits[first.oid] = first
        self.branches["main"] = first.oid

    def resolve(self, rev: str) -> Commit | None:
        oid = self.branches.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)
        return self.commits.get(oid) if oid else None

    def files(self, rev: str = "main") -> dict[str, bytes]:
        commit = self.resolve(rev)
        return {p: b.data for p, b in commit.tree.items()} if commit else {}


def _commit_oid(parent: str | None, title: str, tree: dict[str, Blob]) -> str:
    h = hashlib.sha1(f"{parent}\n{title}\n{time.time_ns()}\n".encode())
    for path in sorted(tree):
        h.update(f"{path}\0{tree[path].oid}\n".encode())
    return h.hexdigest()


@dataclass
class HubState:
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    authorized: list[bool] = field(default_factory=list)  # per request: carried a bearer token
    fail_next: dict[str, int] = field(default_factory=dict)
    delay_s: dict[str, float] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def seed_repo(self, repo_id: str, files: dict[str, bytes], repo_type: str = "dataset", private: bool = True) -> Repo:
        """Create a repo with one commit of `files` (regular blobs), as if a user made it."""
        with self.lock:
            repo = self.repos.setdefault((repo_type, repo_id), Repo(repo_type, repo_id, private))
            parent = repo.commits[repo.branches["main"]]
            tree = {**parent.tree, **{p: Blob(d, lfs=p.endswith(LFS_SUFFIXES)) for p, d in files.items()}}
            if any(b.lfs for b in tree.values()):
                self.lfs.update({b.sha256: b.data for b in tree.values() if b.lfs})
            commit = Commit(_commit_oid(parent.oid, "user commit", tree), parent.oid, "user commit", time.time(), tree)
            repo.commits[commit.oid] = commit
            repo.branches["main"] = commit.oid
            return repo

    def head(self, repo_id: str, repo_type: str = "dataset") -> str:
        return self.repo(repo_id, repo_type).branches["main"]

    def all_bytes(self) -> bytes:
        """Everything stored (files of every commit, LFS objects, refs): for leak checks."""
        parts = list(self.lfs.values())
        for r in self.repos.values():
            for c in r.commits.values():
                parts.append(c.title.encode())
                parts.extend(b.data for b in c.tree.values())
            parts.extend(f"{k}={v}".encode() for k, v in {**r.branches, **r.tags}.items())
        return b"\n".join(parts)

    def _fault(self, kind: str) -> bool:
        with self.lock:
            if self.fail_next.get(kind, 0) > 0:
                self.fail_next[kind] -= 1
                return True
        if self.delay_s.get(kind):
            time.sleep(self.delay_s[kind])
        return False


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


API_REPO = re.compile(r"^/api/(models|datasets|spaces)/([^/]+)/([^/]+)(?:/(.*))?$")
GIT_LFS = re.compile(r"^/(datasets/|spaces/)?([^/]+)/([^/]+)\.git/info/lfs/objects/batch$")
RESOLVE = re.compile(r"^/(datasets/|spaces/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState  # set per server
    base_url: str

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- plumbing ---------------------------------------------------------------------------
    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype="application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        st = self.state
        with st.lock:
            st.requests.append((self.command, url.path))
            st.authorized.append(self.headers.get("Authorization", "").startswith("Bearer "))
        try:
            self._route(url.path, parse_qs(url.query))
        except HubError as e:
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._json({"error": e.message}, e.status, headers)
        except BrokenPipeError:
            pass

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _dispatch

    def _route(self, path: str, query: dict) -> None:
        m = self.command
        if path == "/api/whoami-v2":
            return self._json({"type": "user", "name": "tester", "fullname": "Tester", "orgs": [],
                               "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if path == "/api/repos/create" and m == "POST":
            return self._create_repo(json.loads(self._body() or b"{}"))
        if path == "/api/repos/delete" and m == "DELETE":
            return self._delete_repo(json.loads(self._body() or b"{}"))
        if path == "/api/validate-yaml" and m == "POST":
            return self._validate_yaml(json.loads(self._body() or b"{}"))
        if path.startswith("/lfs-upload/") and m == "PUT":
            return self._lfs_put(path.rsplit("/", 1)[1])
        if mm := GIT_LFS.match(path):
            return self._lfs_batch(self._repo(_type_of(mm.group(1)), mm.group(2), mm.group(3)))
        if mm := API_REPO.match(path):
            repo = self._repo(mm.group(1)[:-1], unquote(mm.group(2)), unquote(mm.group(3)))
            return self._repo_api(repo, mm.group(4) or "", query)
        if (mm := RESOLVE.match(path)) and m in ("GET", "HEAD"):
            repo = self._repo(_type_of(mm.group(1)), mm.group(2), mm.group(3))
            return self._resolve(repo, unquote(mm.group(4)), unquote(mm.group(5)))
        raise HubError(404, f"emulator: no route for {m} {path}")

    def _repo(self, repo_type: str, ns: str, name: str) -> Repo:
        repo = self.state.repos.get((repo_type, f"{ns}/{name}"))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        if repo.private and not self.headers.get("Authorization", "").startswith("Bearer "):
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, rev: str) -> Commit:
        commit = repo.resolve(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    # -- repos ------------------------------------------------------------------------------
    def _create_repo(self, body: dict) -> None:
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or 'tester'}/{body['name']}"
        url = f"{self.base_url}/{PREFIX[repo_type]}{repo_id}"
        with self.state.lock:
            if (repo_type, repo_id) in self.state.repos:
                return self._json({"error": "You already created this repo", "url": url}, 409)
            # huggingface_hub >= 1 sends "visibility" (public | private | protected); older, "private".
            private = body.get("visibility", "public") != "public" if "visibility" in body else bool(body.get("private"))
            self.state.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, private)
        self._json({"url": url, "name": repo_id})

    def _delete_repo(self, body: dict) -> None:
        repo_id = f"{body.get('organization') or 'tester'}/{body['name']}"
        with self.state.lock:
            if self.state.repos.pop((body.get("type") or "model", repo_id), None) is None:
                raise HubError(404, "Repository not found", "RepoNotFound")
        self._json({})

    def _validate_yaml(self, body: dict) -> None:
        content = body.get("content") or ""
        m = re.match(r"^---\n(.*?)\n---", content, re.S)  # a whole README or bare YAML
        try:
            meta = yaml.safe_load(m.group(1) if m else content) or {}
        except yaml.YAMLError as e:
            return self._json({"error": f"invalid YAML: {e}"}, 400)
        if not isinstance(meta, dict):
            return self._json({"error": "metadata must be a mapping"}, 400)
        errors = [f"configs[{i}] needs config_name and data_files" for i, c in enumerate(meta.get("configs") or [])
                  if not (isinstance(c, dict) and c.get("config_name") and c.get("data_files"))]
        if errors:
            return self._json({"error": "; ".join(errors)}, 400)
        self._json({"errors": [], "warnings": []})

    def _repo_api(self, repo: Repo, rest: str, query: dict) -> None:
        parts = rest.split("/") if rest else []
        head, args = (parts[0], parts[1:]) if parts else ("", [])
        m = self.command
        if head in ("", "revision") and m == "GET":
            return self._info(repo, unquote(args[0]) if args else "main")
        if head == "tree" and m == "GET":
            return self._tree(repo, unquote(args[0]), unquote("/".join(args[1:])), _flag(query, "recursive"))
        if head == "paths-info" and m == "POST":
            return self._paths_info(repo, unquote(args[0]))
        if head == "preupload" and m == "POST":
            return self._preupload(repo, unquote(args[0]))
        if head == "commit" and m == "POST":
            return self._commit_post(repo, unquote(args[0]))
        if head == "tag" and m == "POST":
            return self._tag(repo, unquote(args[0]), json.loads(self._body() or b"{}"))
        if head == "tag" and m == "DELETE":
            with self.state.lock:
                if repo.tags.pop(unquote(args[0]), None) is None:
                    raise HubError(404, "tag not found", "RevisionNotFound")
            return self._json({})
        if head == "branch" and m == "POST":
            body = json.loads(self._body() or b"{}")
            start = self._commit(repo, body.get("startingPoint") or "main")
            with self.state.lock:
                if unquote(args[0]) in repo.branches:
                    return self._json({"error": "branch exists"}, 409)
                repo.branches[unquote(args[0])] = start.oid
            return self._json({})
        if head == "refs" and m == "GET":
            refs = lambda d, kind: [{"name": k, "ref": f"refs/{kind}/{k}", "targetCommit": v} for k, v in d.items()]  # noqa: E731
            return self._json({"branches": refs(repo.branches, "heads"), "tags": refs(repo.tags, "tags"), "converts": []})
        if head == "commits" and m == "GET":
            return self._commits(repo, unquote(args[0]) if args else "main")
        raise HubError(404, f"emulator: no route for {m} {repo.repo_id}/{rest}")

    def _info(self, repo: Repo, rev: str) -> None:
        commit = self._commit(repo, rev)
        siblings = [{"rfilename": p, "size": len(b.data), "blobId": b.oid,
                     **({"lfs": {"size": len(b.data), "sha256": b.sha256, "pointerSize": len(lfs_pointer(b.sha256, len(b.data)))}} if b.lfs else {})}
                    for p, b in sorted(commit.tree.items())]
        card = {}
        if "README.md" in commit.tree:
            card = _front_matter(commit.tree["README.md"].data.decode("utf-8", "replace"))
        self._json({"_id": repo.repo_id, "id": repo.repo_id, "author": repo.repo_id.split("/")[0],
                    "sha": commit.oid, "private": repo.private, "gated": False, "disabled": False,
                    "lastModified": hub_date(commit.date), "createdAt": hub_date(repo.created),
                    "tags": [], "downloads": 0, "likes": 0, "cardData": card, "siblings": siblings})

    def _commits(self, repo: Repo, rev: str) -> None:
        out, commit = [], self._commit(repo, rev)
        while commit:
            out.append({"id": commit.oid, "title": commit.title, "message": "", "authors": [{"user": "tester"}],
                        "date": hub_date(commit.date)})
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self._json(out)

    # -- tree / paths-info ------------------------------------------------------------------
    def _entry(self, repo: Repo, commit: Commit, path: str) -> dict | None:
        last = {"id": commit.oid, "title": commit.title, "date": hub_date(commit.date)}
        if path in commit.tree:
            b = commit.tree[path]
            e = {"type": "file", "oid": b.oid, "size": len(b.data), "path": path, "lastCommit": last}
            if b.lfs:
                e["lfs"] = {"oid": b.sha256, "size": len(b.data), "pointerSize": len(lfs_pointer(b.sha256, len(b.data)))}
            return e
        if any(p.startswith(path + "/") for p in commit.tree):
            return {"type": "directory", "oid": git_sha1(path.encode()), "size": 0, "path": path, "lastCommit": last}
        return None

    def _tree(self, repo: Repo, rev: str, path: str, recursive: bool) -> None:
        commit = self._commit(repo, rev)
        path = path.strip("/")
        if path and self._entry(repo, commit, path) is None:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        names: set[str] = set()
        prefix = f"{path}/" if path else ""
        for p in commit.tree:
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):].split("/")
            upto = len(rel) if recursive else 1
            names.update(prefix + "/".join(rel[:i]) for i in range(1, upto + 1))
        self._json([self._entry(repo, commit, n) for n in sorted(names)])

    def _paths_info(self, repo: Repo, rev: str) -> None:
        commit = self._commit(repo, rev)
        body = self._body().decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body).get("paths", [])
        self._json([e for p in paths if (e := self._entry(repo, commit, p.strip("/"))) is not None])

    # -- upload -----------------------------------------------------------------------------
    def _preupload(self, repo: Repo, rev: str) -> None:
        if self.state._fault("preupload"):
            raise HubError(500, "injected preupload failure")
        commit = self._commit(repo, rev)
        files = []
        for f in json.loads(self._body())["files"]:
            sample = base64.b64decode(f.get("sample", ""))
            lfs = f["path"].endswith(LFS_SUFFIXES) or b"\0" in sample or f["size"] > 10_000_000
            old = commit.tree.get(f["path"])
            oid = (old.sha256 if old.lfs else old.oid) if old and old.lfs == lfs else None
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": files, "commitOid": commit.oid})

    def _lfs_batch(self, repo: Repo) -> None:
        if self.state._fault("lfs_batch"):
            raise HubError(500, "injected LFS batch failure")
        body = json.loads(self._body())
        objects = []
        for o in body.get("objects", []):
            obj = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in self.state.lfs:
                obj["actions"] = {"upload": {"href": f"{self.base_url}/lfs-upload/{o['oid']}"}}
            objects.append(obj)
        self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_put(self, oid: str) -> None:
        data = self._body()
        if self.state._fault("lfs_put"):
            raise HubError(500, "injected LFS upload failure")
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, "LFS content does not match its oid")
        with self.state.lock:
            self.state.lfs[oid] = data
        self._send(200, b"", ctype="text/plain")

    def _commit_post(self, repo: Repo, rev: str) -> None:
        lines = [json.loads(x) for x in self._body().splitlines() if x.strip()]
        if self.state._fault("commit"):
            raise HubError(500, "injected commit failure")
        with self.state.lock:
            if rev not in repo.branches:
                raise HubError(404, f"Invalid rev id: {rev} (commits go to a branch)", "RevisionNotFound")
            parent = repo.commits[repo.branches[rev]]
            tree, title = dict(parent.tree), "commit"
            for item in lines:
                key, v = item["key"], item["value"]
                if key == "header":
                    title = v.get("summary") or title
                    if v.get("parentCommit") and v["parentCommit"] != parent.oid:
                        raise HubError(412, "parentCommit is not the head of the branch")
                elif key == "file":
                    tree[v["path"]] = Blob(base64.b64decode(v["content"]), lfs=False)
                elif key == "lfsFile":
                    if v["oid"] not in self.state.lfs:
                        raise HubError(422, f"LFS object {v['oid']} of {v['path']} was never uploaded")
                    tree[v["path"]] = Blob(self.state.lfs[v["oid"]], lfs=True)
                elif key == "deletedFile":
                    if tree.pop(v["path"], None) is None:
                        raise HubError(404, f"cannot delete missing {v['path']}", "EntryNotFound")
                elif key == "deletedFolder":
                    for p in [p for p in tree if p.startswith(v["path"].rstrip("/") + "/")]:
                        del tree[p]
                else:
                    raise HubError(400, f"emulator: unsupported commit operation {key}")
            commit = Commit(_commit_oid(parent.oid, title, tree), parent.oid, title, time.time(), tree)
            repo.commits[commit.oid] = commit
            repo.branches[rev] = commit.oid
        url = f"{self.base_url}/{PREFIX[repo.repo_type]}{repo.repo_id}"
        self._json({"success": True, "commitOid": commit.oid, "commitUrl": f"{url}/commit/{commit.oid}"})

    def _tag(self, repo: Repo, rev: str, body: dict) -> None:
        commit = self._commit(repo, rev)
        with self.state.lock:
            if body["tag"] in repo.tags:
                return self._json({"error": f"tag {body['tag']} already exists"}, 409)
            repo.tags[body["tag"]] = commit.oid
        self._json({})

    # -- download ---------------------------------------------------------------------------
    def _resolve(self, repo: Repo, rev: str, path: str) -> None:
        commit = self._commit(repo, rev)
        blob = commit.tree.get(path)
        if blob is None:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.sha256 if blob.lfs else blob.oid}"',
                   "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))})
        data, status = blob.data, 200
        if rng := re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "")):
            start = int(rng.group(1) or 0)
            end = min(int(rng.group(2)) if rng.group(2) else len(data) - 1, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        self._send(status, data, headers, ctype="application/octet-stream")


def _type_of(prefix: str | None) -> str:
    return {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")


def _flag(query: dict, name: str) -> bool:
    return (query.get(name) or ["false"])[0].lower() in ("1", "true")


def _front_matter(text: str) -> dict:
    m = re.match(r"^---\n(.*?)\n---", text, re.S)
    try:
        meta = yaml.safe_load(m.group(1)) if m else {}
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


@contextlib.contextmanager
def hub_emulator(state: HubState | None = None):
    """Serve a Hub emulator on 127.0.0.1 (free port); yields (endpoint_url, state)."""
    state = state or HubState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    server.RequestHandlerClass = type("BoundHandler", (Handler,), {"state": state, "base_url": url})
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield url, state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def client_env(url: str, token: str | None = None, home: str | None = None) -> dict[str, str]:
    """Environment for a subprocess that talks to the emulator (set before any HF import)."""
    env = {"HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"}
    if token is not None:
        env["HF_TOKEN"] = token
    if home is not None:  # isolate caches so loads really go to the emulator
        env.update({"HF_HOME": home, "HF_DATASETS_CACHE": f"{home}/datasets", "HF_HUB_CACHE": f"{home}/hub"})
    return env


if __name__ == "__main__":  # manual use: python tests/support/hub_emulator.py
    with hub_emulator() as (u, _):
        print(f"HF_ENDPOINT={u} HF_HUB_DISABLE_XET=1", flush=True)
        threading.Event().wait()
