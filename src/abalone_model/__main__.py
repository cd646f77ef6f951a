"""Container entrypoint: ``python -m abalone_model train|evaluate|serve|monitor|explain [args]``.

SageMaker runs the image as ``docker run IMAGE train`` (training) or ``docker run IMAGE serve``
(hosting); processing jobs name ``evaluate``, ``monitor`` or ``explain``. Each subcommand lives in
its own module with a ``main(argv) -> int``; domain errors are printed as one line and mapped to an
exit code here.
"""

from __future__ import annotations

import importlib
import sys

from abalone_model.errors import ModelError

COMMANDS = {
    "train": "abalone_model.train",
    "evaluate": "abalone_model.evaluate",
    "serve": "abalone_model.serve.server",
    "monitor": "abalone_model.monitor",
    "explain": "abalone_model.explain",
}
USAGE = "usage: python -m abalone_model {train|evaluate|serve|monitor|explain} [options]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 64  # EX_USAGE
    module = importlib.import_module(COMMANDS[args[0]])
    try:
        return int(module.main(args[1:]) or 0)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # one line for the job's FailureReason and logs, never a traceback
        print(f"error: {args[0]} failed unexpectedly: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
