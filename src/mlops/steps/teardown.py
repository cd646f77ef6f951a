"""Teardown: delete a stage's endpoint stack to stop its costs (prod only when confirmed)."""

from __future__ import annotations

from mlops import stack
from mlops.context import Context
from mlops.errors import ConfigError


def run(ctx: Context, stage: str, confirm: str = "") -> None:
    ctx.config.stage(stage)
    if stage == "prod" and confirm != "prod":
        raise ConfigError("deleting prod needs --confirm prod")
    stack.delete(ctx.client("cloudformation"), ctx.config.stack_name(stage), region=ctx.region)
