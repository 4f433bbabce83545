"""A faithful local stand-in for the Pods API subset hodei's Kubernetes provider uses.

Paths, JSON shapes (Pod, PodList, Status), label selectors, and the errors a real API
server gives (403 Forbidden, 404 NotFound, 409 AlreadyExists, 422 Invalid) follow the
Kubernetes API. Instead of pulling an image, each pod's ``command`` runs as a local
process with exactly the pod's environment (plus PATH), and its status moves through
the real phases: Pending -> Running -> Succeeded | Failed. An image named
``missing/...`` never pulls (ErrImagePull, then ImagePullBackOff); a nodeSelector on
``fake/unschedulable`` leaves the pod Pending with PodScheduled=False/Unschedulable.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

_POD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A metav1.Status, as the API server returns with every error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality- and set-based label selectors (=, ==, !=, in, notin, exists, !exists)."""
    for term in _split_terms(selector):
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            key, op, values = m[1], m[2], {v.strip() for v in m[3].split(",")}
            if (labels.get(key) in values) != (op == "in") or (op == "in" and key not in labels):
                return False
        elif m := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)", term):
            key, op, value = m[1], m[2], m[3]
            if (labels.get(key) == value) != (op != "!="):
                return False
        elif m := re.fullmatch(r"!([\w./-]+)", term):
            if m[1] in labels:
                return False
        elif re.fullmatch(r"[\w./-]+", term):
            if term not in labels:
                return False
        else:
            raise ValueError(f"unable to parse requirement: {term!r}")
    return True


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current.strip())
    return terms


class FakePod:
    """One pod and the local process standing in for its container."""

    def __init__(self, body: dict[str, Any], namespace: str, log_dir: Path) -> None:
        self.body = body
        self.body["metadata"].update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            resourceVersion="1",
        )
        self.body["status"] = {"phase": "Pending", "conditions": [], "qosClass": "BestEffort"}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = log_dir / f"{namespace}_{body['metadata']['name']}.log"
        self.oom = False
        self.started = time.monotonic()

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def container(self) -> dict[str, Any]:
        return dict(self.body["spec"]["containers"][0])

    def start(self) -> None:
        spec = self.body["spec"]
        if "fake/unschedulable" in (spec.get("nodeSelector") or {}):
            self.body["status"]["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node "
                    "affinity/selector.",
                    "lastTransitionTime": _now(),
                }
            ]
            return
        image = self.container["image"]
        if image.startswith("missing/"):
            self._waiting(
                "ErrImagePull",
                f"rpc error: code = NotFound desc = failed to pull "
                f'and unpack image "{image}": not found',
            )
            return
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update({e["name"]: e.get("value", "") for e in self.container.get("env", [])})
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.container["command"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.body["status"].update(
            phase="Running",
            startTime=_now(),
            podIP="127.0.0.1",
            conditions=[
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
        )
        self._container_status({"running": {"startedAt": _now()}}, ready=True)

    def _waiting(self, reason: str, message: str) -> None:
        self._container_status({"waiting": {"reason": reason, "message": message}})

    def _container_status(self, state: dict[str, Any], ready: bool = False) -> None:
        self.body["status"]["containerStatuses"] = [
            {
                "name": self.container["name"],
                "image": self.container["image"],
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "started": ready,
                "state": state,
            }
        ]

    def refresh(self) -> None:
        """Move the status on as a kubelet would."""
        status_ = self.body["status"]
        waiting = (status_.get("containerStatuses") or [{}])[0].get("state", {}).get("waiting")
        if waiting and waiting["reason"] == "ErrImagePull" and time.monotonic() - self.started > 1:
            self._waiting("ImagePullBackOff", f'Back-off pulling image "{self.container["image"]}"')
        if self.process is None or status_["phase"] not in ("Running",):
            return
        code = self.process.poll()
        if code is None:
            return
        exit_code = 128 - code if code < 0 else code  # a signal shows as 128 + signo
        reason = "OOMKilled" if self.oom else ("Completed" if exit_code == 0 else "Error")
        status_["phase"] = "Succeeded" if exit_code == 0 else "Failed"
        self._container_status(
            {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": reason,
                    "startedAt": status_.get("startTime"),
                    "finishedAt": _now(),
                }
            }
        )

    def kill(self, oom: bool = False) -> None:
        self.oom = oom
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class FakeKubernetes:
    """The server: ``namespaces`` exist, ``forbidden`` ones answer 403 to everything."""

    def __init__(
        self,
        log_dir: Path,
        namespaces: tuple[str, ...] = ("hodei",),
        forbidden: tuple[str, ...] = (),
    ) -> None:
        self.namespaces, self.forbidden = set(namespaces), set(forbidden)
        self.pods: dict[tuple[str, str], FakePod] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.log_dir = log_dir
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKubernetes:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        for pod in list(self.pods.values()):
            pod.kill()

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig file that points the official client at this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "hodei", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "hodei"}}],
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    def handle(self, method: str, url: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        parsed = urlparse(url)
        match = _POD_PATH.match(parsed.path)
        with self.lock:
            self.requests.append((method, parsed.path))
            if match is None:
                return 404, status(
                    404, "NotFound", "the server could not find the requested resource"
                )
            namespace, name, log = match[1], match[2], match[3]
            if namespace in self.forbidden:
                verb = {"GET": "get" if name else "list", "POST": "create", "DELETE": "delete"}.get(
                    method, method.lower()
                )
                return 403, status(
                    403,
                    "Forbidden",
                    f"pods is forbidden: User "
                    f'"system:serviceaccount:hodei:hodei-control" cannot {verb} '
                    f'resource "pods" in API group "" in the namespace '
                    f'"{namespace}"',
                    kind="pods",
                )
            if namespace not in self.namespaces:
                return 404, status(
                    404,
                    "NotFound",
                    f'namespaces "{namespace}" not found',
                    name=namespace,
                    kind="namespaces",
                )
            query = parse_qs(parsed.query)
            if method == "GET" and not name:
                return self._list(namespace, query)
            if method == "POST" and not name:
                return self._create(namespace, body or {})
            pod = self.pods.get((namespace, name or ""))
            if pod is None:
                return 404, status(
                    404, "NotFound", f'pods "{name}" not found', name=name, kind="pods"
                )
            pod.refresh()
            if method == "GET" and log:
                return 200, pod.log.read_text() if pod.log.exists() else ""
            if method == "GET":
                return 200, pod.body
            if method == "DELETE":
                pod.kill()
                del self.pods[(namespace, pod.name)]
                pod.body["metadata"]["deletionTimestamp"] = _now()
                return 200, pod.body
            return 405, status(405, "MethodNotAllowed", f"{method} is not supported")

    def _list(self, namespace: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        selector = query.get("labelSelector", [""])[0]
        items = []
        for (ns, _), pod in sorted(self.pods.items()):
            pod.refresh()
            try:
                if ns == namespace and selector_matches(
                    selector, pod.body["metadata"].get("labels") or {}
                ):
                    items.append(pod.body)
            except ValueError as exc:
                return 400, status(400, "BadRequest", str(exc))
        if "limit" in query:
            items = items[: int(query["limit"][0])]
        return 200, {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(len(self.requests))},
            "items": items,
        }

    def _create(self, namespace: str, body: dict[str, Any]) -> tuple[int, Any]:
        name = (body.get("metadata") or {}).get("name", "")
        problems = []
        if not _NAME.match(name):
            problems.append(
                f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 '
                f"subdomain must consist of lower case alphanumeric characters"
            )
        containers = (body.get("spec") or {}).get("containers") or []
        if not containers:
            problems.append("spec.containers: Required value")
        elif not containers[0].get("command"):
            problems.append("spec.containers[0].command: Required value (the fake runs it)")
        if problems:
            return 422, status(
                422,
                "Invalid",
                f'Pod "{name}" is invalid: ' + ", ".join(problems),
                name=name,
                kind="Pod",
            )
        if (namespace, name) in self.pods:
            return 409, status(
                409, "AlreadyExists", f'pods "{name}" already exists', name=name, kind="pods"
            )
        pod = FakePod(json.loads(json.dumps(body)), namespace, self.log_dir)
        self.pods[(namespace, name)] = pod
        pod.start()
        return 201, pod.body

    def pod(self, name: str, namespace: str = "hodei") -> FakePod:
        with self.lock:
            return self.pods[(namespace, name)]


def _handler(fake: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            code, payload = fake.handle(self.command, self.path, body)
            text = payload if isinstance(payload, str) else json.dumps(payload)
            data = text.encode()
            self.send_response(code)
            self.send_header(
                "Content-Type", "text/plain" if isinstance(payload, str) else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve  # noqa: N815

        def log_message(self, *_: Any) -> None:  # keep test output clean
            pass

    return Handler
