"""Micro-batching: requests that arrive within a few milliseconds of each other share one encoder pass.

Why: a prediction server answers many small requests at once; one pass over 32 sentences costs little
more than a pass over one on a CPU with AMX or on a GPU, so each pass gathers what has arrived during a
short window (``window_ms``), up to a cap in tokens, and answers every request from it. A single worker
thread runs the passes, so the event loop keeps accepting requests while the model computes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from typing import Optional, Sequence

from ..inference import Prediction, Predictor


class InputError(ValueError):
    """A request's inputs that the model could not take, found when its pass was run alone."""


@dataclasses.dataclass
class Pending:
    task: str
    inputs: list
    future: asyncio.Future
    tokens: int


def approximate_tokens(inputs: Sequence) -> int:
    """WordPiece tokens, roughly: 1.3 per word plus [CLS]/[SEP]; enough to cap a pass's size."""
    total = 0
    for item in inputs:
        texts = (item,) if isinstance(item, str) else item
        total += 3 + int(1.3 * sum(len(t.split()) for t in texts))
    return total


class MicroBatcher:
    def __init__(self, predictor: Predictor, window_ms: float = 5.0, max_tokens: int = 8192):
        self.predictor = predictor
        self.window = window_ms / 1000.0
        self.max_tokens = max_tokens
        self.queue: Optional[asyncio.Queue] = None
        self.worker: Optional[asyncio.Task] = None
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtbert-model")
        self.passes = 0          # encoder passes run (one per task in a gathered batch)
        self.requests = 0        # requests answered

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Answer what is queued, then stop (graceful shutdown)."""
        if self.worker is not None:
            await self.queue.join()
            self.worker.cancel()
            try:
                await self.worker
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def submit(self, task: str, inputs: list) -> list[Prediction]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(Pending(task, inputs, future, approximate_tokens(inputs)))
        return await future

    async def _gather(self) -> list[Pending]:
        first = await self.queue.get()
        batch, tokens = [first], first.tokens
        deadline = time.monotonic() + self.window
        while tokens < self.max_tokens:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self.queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            batch.append(item)
            tokens += item.tokens
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            by_task: dict[str, list[Pending]] = {}
            for item in batch:
                by_task.setdefault(item.task, []).append(item)
            for task, items in by_task.items():
                await self._answer(loop, task, items)
            for _ in batch:
                self.queue.task_done()

    async def _answer(self, loop, task: str, items: list[Pending]) -> None:
        """One shared pass for the requests; if it fails, each request alone, so that one request the model
        cannot take fails by itself (with an InputError naming why) and the others are answered."""
        inputs = [x for item in items for x in item.inputs]
        try:
            answers = await loop.run_in_executor(self.executor, self.predictor.predict, task, inputs)
            self.passes += 1
        except Exception as error:  # noqa: BLE001 - whose input it was is found below
            if len(items) > 1:
                for item in items:
                    await self._answer(loop, task, [item])
                return
            if not items[0].future.done():
                items[0].future.set_exception(InputError(f"the model could not take these inputs: "
                                                         f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"))
            self.requests += 1
            return
        start = 0
        for item in items:
            if not item.future.done():
                item.future.set_result(answers[start: start + len(item.inputs)])
            start += len(item.inputs)
            self.requests += 1
