"""The prediction server through a real HTTP client: endpoints, answers equal to the Predictor's,
one-line 4xx errors, micro-batching of concurrent requests, graceful shutdown on SIGTERM, and the page
in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from mtbert import Predictor  # noqa: E402
from mtbert.serve.app import create_app  # noqa: E402
from test_train_cli import trained_run  # noqa: E402,F401


@pytest.fixture(scope="module")
def predictor(trained_run):  # noqa: F811
    return Predictor.from_pretrained(trained_run / "best", device="cpu")


def client(predictor, window_ms=5.0):
    app = create_app(predictor, window_ms=window_ms)
    return app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mtbert")


def run(coroutine):
    return asyncio.run(coroutine)


async def with_app(predictor, body, window_ms=5.0):
    app, http = client(predictor, window_ms)
    async with app.router.lifespan_context(app), http:
        return await body(app, http)


def test_endpoints_answer_as_the_predictor_does(predictor):
    async def body(app, http):
        health = (await http.get("/health")).json()
        tasks = (await http.get("/tasks")).json()
        sst = await http.post("/predict/sst", json={"inputs": ["A gorgeous film.", "Dull."]})
        pair = await http.post("/predict/quora", json={"input": ["How do I cook?", "How to cook?"]})
        every = await http.post("/predict", json={"inputs": [["a b", "c d"]]})
        page = await http.get("/")
        return health, tasks, sst, pair, every, page
    health, tasks, sst, pair, every, page = run(with_app(predictor, body))
    assert health["status"] == "ok" and health["tasks"] == ["sst", "quora", "sts"]
    assert tasks["sst"]["labels"][4] == "very positive" and tasks["sts"]["range"] == [0.0, 5.0]
    expected = [a.to_dict() for a in predictor.predict("sst", ["A gorgeous film.", "Dull."])]
    assert sst.status_code == 200 and sst.json()["predictions"] == [{k: v for k, v in e.items() if k != "task"}
                                                                    for e in expected]
    assert pair.json()["predictions"][0]["label"] in ("duplicate", "not duplicate")
    assert set(every.json()["predictions"]) == {"quora", "sts"} and "score" in every.json()["predictions"]["sts"][0]
    assert page.status_code == 200 and "<title>mtbert</title>" in page.text


@pytest.mark.parametrize("path, payload, status, message", [
    ("/predict/nli", {"inputs": ["x"]}, 404, "no task 'nli'"),
    ("/predict/sst", {"inputs": []}, 400, '"inputs" must be a non-empty list'),
    ("/predict/sst", {"text": "x"}, 400, 'send a JSON object with "inputs"'),
    ("/predict/sst", {"inputs": [["a", "b"]]}, 400, "this task takes single sentences"),
    ("/predict/quora", {"inputs": ["a"]}, 400, "this task takes pairs"),
    ("/predict/sst", {"inputs": [3]}, 400, "input 0: expected a sentence or a pair"),
    ("/predict/sst", {"inputs": ["  "]}, 400, "input 0: empty text"),
    ("/predict/sst", {"inputs": ["x"] * 300}, 413, "at most 256 inputs"),
    ("/predict", {"inputs": ["a", ["b", "c"]]}, 400, "mix sentences and pairs"),
    ("/predict/sst", "not json", 400, "not valid JSON"),
])
def test_bad_requests_get_a_4xx_with_one_line(predictor, path, payload, status, message):
    async def body(app, http):
        if payload == "not json":
            return await http.post(path, content=b"{nope", headers={"content-type": "application/json"})
        return await http.post(path, json=payload)
    response = run(with_app(predictor, body))
    assert response.status_code == status and message in response.json()["error"]
    assert "\n" not in response.json()["error"]


def test_concurrent_requests_share_encoder_passes(predictor):
    async def body(app, http):
        sentences = [f"sentence number {i}" for i in range(24)]
        responses = await asyncio.gather(*[http.post("/predict/sst", json={"inputs": [s]}) for s in sentences])
        return sentences, responses, app.state.batcher
    sentences, responses, batcher = run(with_app(predictor, body, window_ms=50.0))
    assert all(r.status_code == 200 for r in responses)
    expected = predictor.predict("sst", sentences)
    assert [r.json()["predictions"][0]["label_id"] for r in responses] == [a.label_id for a in expected]
    assert batcher.requests == 24 and batcher.passes < 24 / 2, batcher.passes


BAD_BODIES = [  # what a client can send that must fail alone, with a 4xx
    b'{"inputs": ["\\ud800 x"]}',                  # a lone surrogate: JSON carries it, no tokenizer takes it
    b"[" * 100_000 + b"]" * 100_000,                  # nested past Python's recursion limit
    b'{"inputs": [["a", "\\udfff"]]}',
    b'{"inputs": "  "}',
    b"\xff\xfe not utf-8",
]


def test_bad_requests_fail_alone_among_concurrent_good_ones(predictor):
    """32 clients at once, every fourth request bad: each good one 200 with the Predictor's answer, each bad
    one a 4xx, none a 500 (in-process: bounded in count and time, no network)."""
    async def body(app, http):
        requests = []
        for i in range(96):
            if i % 4 == 3:
                requests.append(("bad", http.post("/predict/sst", content=BAD_BODIES[(i // 4) % len(BAD_BODIES)],
                                                  headers={"content-type": "application/json"})))
            else:
                requests.append((f"good sentence {i}", http.post("/predict/sst", json={"inputs": [f"good sentence {i}"]})))
        responses = []
        for start in range(0, len(requests), 32):  # 32 concurrent clients, three rounds
            chunk = requests[start:start + 32]
            responses += list(zip([r[0] for r in chunk], await asyncio.wait_for(
                asyncio.gather(*[r[1] for r in chunk]), timeout=120)))
        return responses
    responses = run(with_app(predictor, body, window_ms=20.0))
    good = [(text, r) for text, r in responses if text != "bad"]
    bad = [r for text, r in responses if text == "bad"]
    assert all(r.status_code == 200 for _, r in good), [r.text for _, r in good if r.status_code != 200][:3]
    labels = [a.label_id for a in predictor.predict("sst", [text for text, _ in good])]
    assert [r.json()["predictions"][0]["label_id"] for _, r in good] == labels
    assert all(400 <= r.status_code < 500 for r in bad), [(r.status_code, r.text[:80]) for r in bad]
    assert all("\n" not in r.json()["error"] for r in bad)


def test_a_request_the_model_cannot_take_fails_alone(predictor, monkeypatch):
    """Whatever makes the model's pass fail for one request's inputs, the requests batched with it are answered."""
    real = predictor.predict

    def fussy(task, inputs):
        if any("poison" in text for text in inputs):
            raise RuntimeError("cannot encode this\nsecond line")
        return real(task, inputs)
    monkeypatch.setattr(predictor, "predict", fussy)

    async def body(app, http):
        return await asyncio.gather(*[http.post("/predict/sst", json={"inputs": [text]})
                                      for text in ("fine one", "poison", "fine two")])
    ok1, poisoned, ok2 = run(with_app(predictor, body, window_ms=50.0))
    assert ok1.status_code == ok2.status_code == 200
    assert poisoned.status_code == 422 and "cannot encode this" in poisoned.json()["error"]
    assert "\n" not in poisoned.json()["error"]


def test_inputs_may_be_one_sentence(predictor):
    async def body(app, http):
        return await http.post("/predict/sst", json={"inputs": "A gorgeous film."})
    response = run(with_app(predictor, body))
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(trained_run):  # noqa: F811
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mtbert", "serve", "--model", str(trained_run / "best"),
                                "--port", str(port), "--device", "cpu"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(process.stdout.read())
    yield port, process
    if process.poll() is None:
        process.kill()


def test_a_real_server_answers_and_shuts_down_on_sigterm(server):
    port, process = server
    response = httpx.post(f"http://127.0.0.1:{port}/predict/sts", json={"inputs": [["A dog runs.", "A dog runs."]]})
    assert response.status_code == 200 and 0.0 <= response.json()["predictions"][0]["score"] <= 5.0
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises the signal so that a supervisor sees why it ended
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Shutting down" in output and "Application shutdown complete" in output and "Traceback" not in output


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (.ci/run installs it)")
def test_the_page_shows_every_tasks_answer_in_a_browser(server):
    port, _ = server
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    query = urllib.parse.urlencode({"text": "How do I cook rice?", "pair": "What is the way to cook rice?"})
    dom = subprocess.run(["chromium", *flags, "--dump-dom", f"http://127.0.0.1:{port}/?{query}"],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-done="yes"' in dom.stdout and 'data-task="quora"' in dom.stdout and 'data-task="sts"' in dom.stdout
    single = subprocess.run(["chromium", *flags, "--dump-dom", f"http://127.0.0.1:{port}/?text=A+gorgeous+film."],
                            capture_output=True, text=True, timeout=120)
    assert 'data-task="sst"' in single.stdout and 'class="answer"' in single.stdout
