"""The prediction server under load, beside the Predictor called in-process.

    python benchmarks/serve.py [--model RUN/best] [--requests 240] [--concurrency 1 8 32] [--window-ms 5]
                               [--backend torch|onnx|onnx-int8] [--name RECORD]

Starts ``mtbert serve`` on 127.0.0.1 (a free port), waits for /health, then for each concurrency level
drives ``POST /predict/sst`` with that many clients (one SST dev sentence per request) until
``--requests`` have been answered; records requests/s, p50 and p99 latency and errors (which must be
0), and the encoder passes the server ran (micro-batching: fewer passes than requests). In-process: the
Predictor on the same sentences one at a time and in batches of 32. Without ``--model`` a MiniLM
multitask model is trained for a few steps first (speed does not depend on how well it was trained).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

from common import CHILD_CWD, REPO, machine, markdown_table, save
from mtbert import Predictor
from mtbert.tasks import TASKS, read_examples

DATA = Path(os.environ.get("MTBERT_DATA_DIR") or REPO.parent / "shared" / "data")


def a_model(output: Path) -> Path:
    """all-MiniLM-L6-v2 with the quickstart's heads after a few steps."""
    if not (output / "best" / "mtbert.json").exists():
        subprocess.run([sys.executable, "-m", "mtbert", "train", "--config", str(REPO / "recipes" / "quickstart.yaml"),
                        "--output-dir", str(output), "--overwrite", "--set", "data.limit=64", "--set", "train.epochs=1",
                        "--set", "train.progress=false", "--set", "train.keep_checkpoint=none"], check=True)
    return output / "best"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def drive(url: str, sentences: list[str], requests: int, clients: int) -> dict:
    latencies, errors, sent = [], 0, 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, sent
        while sent < requests:
            sentence = sentences[sent % len(sentences)]
            sent += 1
            started = time.perf_counter()
            response = await http.post(url, json={"inputs": [sentence]})
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*[client(http) for _ in range(clients)])
        seconds = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "seconds": round(seconds, 3),
            "requests_per_second": round(len(latencies) / seconds, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
            "errors": errors}


def in_process(model: Path, sentences: list[str], backend: str = "torch") -> dict:
    predictor = Predictor.from_pretrained(model, backend=backend)
    predictor.predict("sst", sentences[:8])  # warm-up
    started = time.perf_counter()
    for sentence in sentences[:64]:
        predictor.predict("sst", [sentence])
    single = 64 / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(0, len(sentences), 32):
        predictor.predict("sst", sentences[i: i + 32])
    batched = len(sentences) / (time.perf_counter() - started)
    return {"one_at_a_time_per_second": round(single, 1), "batches_of_32_per_second": round(batched, 1),
            "precision": predictor.precision.name, "device": machine(predictor.precision.device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--name", default="serve")
    parser.add_argument("--backend", default="torch", help="the server's and the Predictor's: torch, onnx, onnx-int8")
    args = parser.parse_args()
    model = args.model or a_model(REPO / "runs" / "serve-bench-model")
    sentences = [e.texts[0] for e in read_examples(TASKS["sst"], DATA / "ids-sst-dev.csv", limit=512).examples]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mtbert", "serve", "--model", str(model.resolve()), "--port",
                               str(port), "--window-ms", str(args.window_ms), "--backend", args.backend],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, cwd=CHILD_CWD)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        rows, levels = [], []
        for clients in args.concurrency:
            before = httpx.get(f"http://127.0.0.1:{port}/health").json()["passes"]
            result = asyncio.run(drive(f"http://127.0.0.1:{port}/predict/sst", sentences, args.requests, clients))
            result["encoder_passes"] = httpx.get(f"http://127.0.0.1:{port}/health").json()["passes"] - before
            levels.append(result)
            rows.append([f"HTTP, {clients} client(s)", result["requests"], result["requests_per_second"],
                         result["p50_ms"], result["p99_ms"], result["errors"], result["encoder_passes"]])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    local = in_process(model, sentences, args.backend)
    rows.append(["Predictor in-process, one sentence per call", 64, local["one_at_a_time_per_second"], "", "", 0, 64])
    rows.append(["Predictor in-process, batches of 32", len(sentences), local["batches_of_32_per_second"], "", "", 0,
                 -(-len(sentences) // 32)])
    table = markdown_table(["how", "requests", "sentences/s", "p50 ms", "p99 ms", "errors", "encoder passes"], rows)
    info = local["device"]
    print(f"\nMachine: {info['device']} (1-min load {info.get('load_average_1min')}), backend {args.backend} "
          f"({local['precision']}); model "
          f"all-MiniLM-L6-v2 multitask (quickstart heads); one SST dev sentence per request; micro-batch window "
          f"{args.window_ms} ms\n")
    print(table)
    save(args.name, {"machine": info, "backend": args.backend, "precision": local["precision"],
                     "window_ms": args.window_ms,
                     "levels": levels, "in_process": local, "table": table})


if __name__ == "__main__":
    main()
