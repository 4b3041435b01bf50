"""``serve`` throughput and latency vs calling the SavedModel directly in this process.

Goal: at concurrency 8, the server's images/s >= 0.8 x the direct calls'. Both run the export's
``serving_default`` signature on the same encoded JPEGs, one image per call: directly, from C threads of this
process; through ``python -m jobs serve`` (a separate process, as users run it), from C client threads with
keep-alive connections sending Vertex's JSON body. The two take turns for ``--rounds`` rounds (the machine is
shared); each figure is the median over the rounds. The demo model is trained first unless ``--model`` names an
export.
Run: .venv/bin/python bench/serve.py [--model EXPORT] [--requests 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8)
GOAL = 0.8


def measure(call: Callable[[int], None], concurrency: int, requests: int) -> tuple[float, float, float]:
    """(images/s, p50 ms, p99 ms) of ``requests`` calls spread over ``concurrency`` threads."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker(slot: int) -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            start = time.perf_counter()
            call(slot)
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return requests / elapsed, cuts[49] * 1000, cuts[98] * 1000


def direct_caller(export: Path, images: list[bytes]) -> Callable[[int], None]:
    import tensorflow as tf

    signature = tf.saved_model.load(str(export / "saved_model")).signatures["serving_default"]
    turn = [0]

    def call(slot: int) -> None:
        turn[0] += 1
        signature(image_bytes=tf.constant([images[turn[0] % len(images)]]))["num_detections"].numpy()

    return call


def server_caller(port: int, images: list[bytes], concurrency: int) -> Callable[[int], None]:
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(i).decode()}]}).encode() for i in images]
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _ in range(concurrency)]
    turn = [0]

    def call(slot: int) -> None:
        turn[0] += 1
        connection = connections[slot]
        connection.request("POST", "/v1/models/detector:predict", body=bodies[turn[0] % len(bodies)],
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {answer[:200]!r}")

    return call


def start_server(export: Path) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-m", "jobs", "serve", "--model", str(export), "--port", "0"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "COLUMNS": "400"})
    line = process.stdout.readline() if process.stdout else ""
    if "http://127.0.0.1:" not in line:
        process.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    return process, int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])


def demo_export(folder: Path) -> Path:
    from jobs.demo import run_demo

    return run_demo(folder / "demo", steps=400, images=150).paths["exported model"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an export folder (default: train the demo model first)")
    parser.add_argument("--requests", type=int, default=64, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from jobs.dataset.synthetic import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        export = args.model or demo_export(Path(tmp))
        drawn = make_dataset(Path(tmp) / "images", 16, seed=7)
        images = [path.read_bytes() for path in sorted(drawn.images_dir.iterdir())]
        direct = direct_caller(export, images)
        for _ in range(8):
            direct(0)  # the first calls of a loaded model are slow
        process, port = start_server(export)
        try:
            results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
            for _ in range(args.rounds):
                for concurrency in CONCURRENCY:
                    served = server_caller(port, images, concurrency)
                    for name, call in (("direct", direct), ("serve", served)):
                        results.setdefault((name, concurrency), []).append(
                            measure(call, concurrency, args.requests))
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"{len(images)} synthetic 128x128 JPEGs, one per call, "
          f"{args.requests} calls per measurement, median of {args.rounds} rounds, {os.cpu_count()} CPUs")
    print(f"{'':8}{'c':>3}{'images/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    medians = {key: [statistics.median(values) for values in zip(*runs, strict=True)]
               for key, runs in results.items()}
    for (name, concurrency), (rate, p50, p99) in sorted(medians.items(), key=lambda item: (item[0][1], item[0][0])):
        print(f"{name:8}{concurrency:>3}{rate:>10.1f}{p50:>9.1f}{p99:>9.1f}")
    for concurrency in CONCURRENCY:
        ratio = medians[("serve", concurrency)][0] / medians[("direct", concurrency)][0]
        goal = f" (goal >= {GOAL})" if concurrency == max(CONCURRENCY) else ""
        print(f"serve / direct images/s at concurrency {concurrency}: {ratio:.2f}{goal}")


if __name__ == "__main__":
    main()
