"""``python -m abalone_model serve``: the inference server on uvicorn (httptools + uvloop).

SageMaker starts the container with ``serve`` and expects port 8080 (``SAGEMAKER_BIND_TO_PORT``
may override). The model is loaded here first, so a missing or broken model (or a bad batch
setting, see ``serve.batch``) stops the process with one clear line before anything listens; then
each worker (one per core unless ``SAGEMAKER_MODEL_SERVER_WORKERS`` says otherwise) loads its own
copy before it accepts requests.
"""

from __future__ import annotations

import argparse
import os

from abalone_model.errors import ModelError
from abalone_model.serve.app import DEFAULT_MODEL_DIR, InferenceApp
from abalone_model.serve.batch import env_int

KEEP_ALIVE_S = 75  # longer than common load-balancer idle timeouts (60 s)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m abalone_model serve", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a container must listen on all
    parser.add_argument(
        "--port", type=int, default=None, help="default $SAGEMAKER_BIND_TO_PORT/8080"
    )
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", DEFAULT_MODEL_DIR))
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    args = parser.parse_args(argv)
    if args.port is None:
        args.port = env_int(os.environ, "SAGEMAKER_BIND_TO_PORT", 8080, 65535)
    if args.workers is None:
        args.workers = env_int(os.environ, "SAGEMAKER_MODEL_SERVER_WORKERS", _cores(), 512)
    if not 1 <= args.port <= 65535 or args.workers < 1:
        raise ModelError(f"bad --port {args.port} or --workers {args.workers}")
    return args


def load_or_explain(model_dir: str) -> InferenceApp:
    """The app with its model loaded, or a ModelError saying what is wrong and what to do."""
    app = InferenceApp(model_dir=model_dir)
    try:
        app.load()
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot load the model from {model_dir}: {exc}") from exc
    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn  # the server only; keeps `train`/`evaluate` imports light

    args = parse_args(list(argv or []))
    # the app (and each spawned worker's) answers MaxConcurrentTransforms = the worker count
    os.environ["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(args.workers)
    app = load_or_explain(args.model_dir)
    options: dict = {
        "host": args.host,
        "port": args.port,
        "http": "httptools",
        "loop": "uvloop",
        "lifespan": "on",
        "access_log": False,
        "server_header": False,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "log_level": "info",
    }
    if args.workers == 1:
        uvicorn.run(app, **options)
    else:  # spawned workers build their own app from the environment
        os.environ["SM_MODEL_DIR"] = str(args.model_dir)
        uvicorn.run(
            "abalone_model.serve.app:create_app", factory=True, workers=args.workers, **options
        )
    return 0
