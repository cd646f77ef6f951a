"""The SageMaker hosting contract as a raw ASGI app: GET /ping, POST /invocations, and batch
transform's GET /execution-parameters (see ``serve.batch`` for its values and environment).

No web framework: the hot path is a few header lookups, the parser and one ``predict`` call, so the
server's own overhead stays small next to the model. Every client mistake gets a 4xx with a JSON
body naming the problem (and row/field where it applies); anything unexpected is logged and answered
with a generic 500 while the worker keeps serving.

Values outside the schema's training ranges are predicted, not refused: they are a drift signal.
Every prediction answers ``X-Out-Of-Range: <n>`` (values outside their range in this request, 0
when none) and, when n > 0, ``X-Out-Of-Range-Features: height=2,length=1`` (per feature). The app
keeps the running totals in ``InferenceApp.out_of_range`` (a Counter by feature) next to
``rows_predicted``, and logs them as a warning at shutdown when any were seen. (Behind a real
SageMaker endpoint only ``X-Amzn-SageMaker-Custom-Attributes`` is passed back to the caller, so
these headers serve direct callers: the local runtime, batch tooling, the container tests.)
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from abalone_model.features import Encoder, FeatureError, encoder_for
from abalone_model.serve import batch, parsing
from abalone_model.serve.parsing import ClientError

# SageMaker's real-time payload limit and batch transform's default MaxPayloadInMB (6). Its MB is
# read as 1024 * 1024 bytes, the larger reading, so a payload of exactly MaxPayloadInMB always fits:
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
MAX_BODY = batch.DEFAULT_PAYLOAD_MB * batch.MIB
DEFAULT_MODEL_DIR = "/opt/ml/model"
LOG = logging.getLogger("abalone_model.serve")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_TYPES = {parsing.CSV: b"text/csv", parsing.JSON: b"application/json"}
_ALLOW = {
    "/ping": (("GET", "HEAD"), b"GET, HEAD"),
    "/invocations": (("POST",), b"POST"),
    "/execution-parameters": (("GET",), b"GET"),
}


class InferenceApp:
    """ASGI callable; the model is passed in or loaded from ``model_dir`` at lifespan startup.

    The body limit defaults to 6 MiB, or more when batch transform's MaxPayloadInMB asks for it.
    """

    def __init__(
        self, model_dir: str | Path | None = None, model: Any = None, max_body: int | None = None
    ) -> None:
        self.model_dir = model_dir
        self.execution = batch.execution_parameters(os.environ)
        payload = int(self.execution["MaxPayloadInMB"]) * batch.MIB
        self.max_body = max(MAX_BODY, payload) if max_body is None else max_body
        self.model: Any = None
        self.encoder: Encoder | None = None
        self.out_of_range: Counter[str] = Counter()
        self.rows_predicted = 0
        if model is not None:
            self.use(model)

    def use(self, model: Any) -> None:
        """Install a loaded model (a ``TrainedModel``) and compile its schema's encoder."""
        self.encoder = encoder_for(model.schema)
        self.model = model

    def load(self) -> None:
        """Load the model from ``model_dir`` (once; raises ModelError when missing or broken)."""
        from abalone_model.model import load  # xgboost import deferred to the worker

        self.use(load(self.model_dir or DEFAULT_MODEL_DIR))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.model is None:
                        self.load()
                except Exception as exc:
                    LOG.error("cannot load the model: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._report()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _report(self) -> None:
        """The worker's out-of-range totals, for the logs a drift check reads."""
        if self.out_of_range:
            LOG.warning(
                "values outside the training ranges in %d rows predicted: %s",
                self.rows_predicted,
                _per_feature(self.out_of_range),
            )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        route = _ALLOW.get(path)
        if route is None:
            await _error(
                send, 404, f"no such path {path!r:.60}: use POST /invocations or GET /ping"
            )
            return
        if method not in route[0]:
            await _error(send, 405, f"{method} not allowed on {path}", [(b"allow", route[1])])
            return
        try:
            if path == "/ping":
                await self._ping(send)
            elif path == "/execution-parameters":
                body = json.dumps(self.execution).encode()
                await _respond(send, 200, body, b"application/json")
            else:
                await self._invoke(scope, receive, send)
        except Exception:
            LOG.exception("unexpected error serving %s %s", method, path)
            await _error(send, 500, "internal server error; see the server log")

    async def _ping(self, send: Send) -> None:
        if self.model is None:
            await _error(send, 503, "the model is still loading")
            return
        await _respond(send, 200, b"", b"text/plain")

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.model is None or self.encoder is None:
            await _error(send, 503, "the model is still loading")
            return
        headers = _headers(scope)
        try:
            _check_length(headers.get(b"content-length"), self.max_body)
            family = parsing.request_family(_text(headers.get(b"content-type")))
            answer = parsing.response_family(_text(headers.get(b"accept")), family)
            body = await _read_body(receive, self.max_body)
            matrix = parsing.parse_body(self.encoder, family, body)
        except ClientError as exc:
            await _error(send, exc.status, exc.message)
            return
        except FeatureError as exc:
            await _respond(send, 400, json.dumps(exc.to_dict()).encode(), b"application/json")
            return
        predictions = self.model.predict(matrix)
        outside = self.encoder.out_of_range(matrix)
        self.rows_predicted += len(matrix)
        self.out_of_range.update(outside)
        body = parsing.format_predictions(predictions, answer)
        await _respond(send, 200, body, _TYPES[answer], _range_headers(outside))


def _per_feature(counts: dict[str, int]) -> str:
    return ",".join(f"{name}={n}" for name, n in counts.items())


def _range_headers(outside: dict[str, int]) -> list[tuple[bytes, bytes]]:
    """``X-Out-Of-Range`` always (a monitor can rely on it), the per-feature split when any."""
    headers = [(b"x-out-of-range", str(sum(outside.values())).encode())]
    if outside:
        headers.append((b"x-out-of-range-features", _per_feature(outside).encode()))
    return headers


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request headers we use (names are lower-case in ASGI); the last one wins."""
    return {
        k: v for k, v in scope["headers"] if k in (b"content-type", b"accept", b"content-length")
    }


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _check_length(value: bytes | None, limit: int) -> None:
    """Refuse a declared oversize body before reading a byte of it."""
    if value is not None and value.strip().isdigit() and int(value) > limit:
        raise ClientError(413, f"body of {int(value)} bytes exceeds the {limit}-byte limit")


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The request body, capped while reading (a chunked or lying client cannot exceed it)."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientError(400, "the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, kind: bytes, extra: list | None = None
) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, message: str, extra: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await _respond(send, status, body, b"application/json", extra)


def create_app() -> InferenceApp:
    """Factory for uvicorn workers: the model directory comes from ``SM_MODEL_DIR``."""
    return InferenceApp(model_dir=os.environ.get("SM_MODEL_DIR", DEFAULT_MODEL_DIR))
