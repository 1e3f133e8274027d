"""``mtbert serve``: a trained model behind HTTP (FastAPI + uvicorn, the ``serve`` extra).

    POST /predict/{task}   {"inputs": ["a sentence", ...]} or {"inputs": [["a", "b"], ...]} or {"input": ...}
    POST /predict          the same inputs, every task that takes them (what the page at / uses)
    GET  /tasks            each task's kind, inputs and labels or score range
    GET  /health           {"status": "ok", ...}
    GET  /                 a page to type a sentence (or a pair) and see every task's answer

Bad requests get a 4xx with a one-line ``{"error": ...}`` (never a 500); concurrent requests are
micro-batched into shared encoder passes (``mtbert.serve.batcher``); SIGTERM shuts down gracefully
(uvicorn stops accepting, answers what is in flight, then the batcher drains its queue).
"""


import contextlib
from importlib import resources
from typing import Any, Optional

from ..inference import Predictor
from ..inference.inputs import valid_unicode
from .batcher import InputError, MicroBatcher

MAX_INPUTS = 256      # per request
MAX_CHARACTERS = 10_000  # per sentence


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_inputs(body: Any, pairs: Optional[bool]) -> list:
    """The request's inputs as a list of sentences or of (a, b) pairs, or a RequestError saying why not.
    ``pairs``: what the task takes (None: either, all of one kind)."""
    if not isinstance(body, dict) or (("inputs" in body) == ("input" in body)):
        raise RequestError(400, 'send a JSON object with "inputs": [...] (or "input": one sentence or pair)')
    items = body["inputs"] if "inputs" in body else [body["input"]]
    if isinstance(items, str):  # {"inputs": "one sentence"}, as the transformers pipelines' servers take it
        items = [items]
    if not isinstance(items, list) or not items:
        raise RequestError(400, '"inputs" must be a non-empty list')
    if len(items) > MAX_INPUTS:
        raise RequestError(413, f"at most {MAX_INPUTS} inputs per request, got {len(items)}")
    parsed = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            texts = (item,)
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(t, str) for t in item):
            texts = tuple(item)
        else:
            raise RequestError(400, f"input {i}: expected a sentence or a pair [a, b] of sentences")
        if not all(t.strip() for t in texts):
            raise RequestError(400, f"input {i}: empty text")
        if not all(valid_unicode(t) for t in texts):
            raise RequestError(400, f"input {i}: not valid Unicode text (a lone surrogate such as \\ud800)")
        if any(len(t) > MAX_CHARACTERS for t in texts):
            raise RequestError(413, f"input {i}: a sentence longer than {MAX_CHARACTERS} characters")
        parsed.append(texts)
    kinds = {len(t) for t in parsed}
    if len(kinds) > 1:
        raise RequestError(400, "the inputs mix sentences and pairs: send one kind per request")
    is_pair = kinds == {2}
    if pairs is not None and is_pair != pairs:
        raise RequestError(400, "this task takes pairs [a, b] of sentences" if pairs else "this task takes single sentences")
    return [t if is_pair else t[0] for t in parsed]


def create_app(predictor: Predictor, window_ms: float = 5.0, max_tokens: int = 8192):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException

    batcher = MicroBatcher(predictor, window_ms, max_tokens)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="mtbert", lifespan=lifespan)
    app.state.batcher = batcher

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        return error(400, f"bad request: {first.get('msg', 'invalid body')}".replace("\n", " "))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    async def body_of(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise RequestError(400, "the body is not valid JSON") from None
        except RecursionError:
            raise RequestError(400, "the body is nested too deeply") from None

    async def answers(task: str, inputs: list) -> list:
        try:
            return await batcher.submit(task, inputs)
        except InputError as error:  # the model could not take this request's inputs (others are answered)
            raise RequestError(422, str(error)) from None

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "tasks": list(predictor.tasks), "passes": batcher.passes,
                "requests": batcher.requests}

    @app.get("/tasks")
    async def tasks() -> dict:
        return predictor.describe()

    @app.post("/predict/{task}")
    async def predict(task: str, request: Request) -> dict:
        if task not in predictor.tasks:
            raise RequestError(404, f"no task {task!r}; this model has {', '.join(predictor.tasks)}")
        inputs = parse_inputs(await body_of(request), predictor.tasks[task].is_pair)
        return {"task": task, "predictions": [answer_dict(a) for a in await answers(task, inputs)]}

    @app.post("/predict")
    async def predict_all(request: Request) -> dict:
        inputs = parse_inputs(await body_of(request), None)
        pairs = not isinstance(inputs[0], str)
        chosen = [t for t, spec in predictor.tasks.items() if spec.is_pair == pairs]
        if not chosen:
            raise RequestError(400, f"this model has no task that takes {'pairs' if pairs else 'single sentences'}")
        results = {}
        for task in chosen:
            results[task] = [answer_dict(a) for a in await answers(task, inputs)]
        return {"predictions": results}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("mtbert.serve").joinpath("page.html").read_text(encoding="utf-8")

    return app


def answer_dict(answer) -> dict:
    values = answer.to_dict()
    values.pop("task", None)
    return values


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, device: str = "auto", precision: str = "auto",
          window_ms: float = 5.0, max_tokens: int = 8192, base: Optional[str] = None, backend: str = "torch") -> None:
    """Load the model (run by ``backend``: torch, onnx, onnx-int8) and serve it until SIGTERM or Ctrl-C."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("mtbert serve needs the serve extra: pip install -e '.[serve]' (fastapi, uvicorn)") from None
    predictor = Predictor.from_pretrained(model, device=device, precision=precision, base=base, backend=backend)
    uvicorn.run(create_app(predictor, window_ms, max_tokens), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=30)
