"""`mlops run --local`: bootstrap the local account, then run deploy.yml's jobs as GitHub would."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from mlops.config import Config
from mlops.context import Context, git_sha
from mlops.local import jobs
from mlops.local.runtime import LocalRuntime
from mlops.manifest import Manifest

DEPLOY_WORKFLOW = ".github/workflows/deploy.yml"


@contextmanager
def workflow_run(
    root: Path,
    runs_dir: Path,
    cfg: Config,
    approve: Callable[[str], bool],
    after: Callable[[Context, Path], Any] | None = None,
    tune: bool = False,
    running: tuple[LocalRuntime, Any] | None = None,
) -> Iterator[tuple[LocalRuntime, Context, Any, jobs.Runner]]:
    """The whole run (the run folder written even when a job fails); ``after`` runs when every
    job succeeded, before the run folder is written; the runtime stays up while the caller looks
    at what it made. ``tune`` runs it as a manual dispatch with the ``tune`` input set.
    ``running``: the long-lived local AWS's runtime and the GitHub its bootstrap set up, whose
    account the run uses as it is (a package trained on the same data is reused, as on AWS)."""
    own = running is None
    with LocalRuntime(root, runs_dir) if own else nullcontext(running[0]) as runtime:
        if not own:
            runtime.new_run(runs_dir)
        ctx = Context(
            cfg,
            runtime.session,
            Manifest.load(runtime.run_dir / "manifest.json", create=True),
            root=root,
        )
        github = runtime.bootstrap(ctx, push=False) if own else running[1]
        sha = git_sha(root)  # GITHUB_SHA, or the checkout's HEAD; "unknown" outside git
        runner = jobs.Runner(
            runtime,
            root / DEPLOY_WORKFLOW,
            github,
            approve,
            sha=sha if len(sha) == 40 else (sha + "0" * 40)[:40],
            **({"event": "workflow_dispatch", "inputs": {"tune": "true"}} if tune else {}),
        )
        try:
            runner.run()
            if after is not None:
                runtime.merge_jobs(ctx, runner)
                runtime.endpoints.flush_all()  # capture AWS would have delivered by now
                started = time.monotonic()
                after(ctx, runtime.run_dir)
                runtime.extra_timings["batch scoring"] = time.monotonic() - started
        finally:
            runtime.export_jobs(ctx, runner)
        yield runtime, ctx, github, runner
