"""One module per pipeline step; each exposes ``run(ctx, ...)`` and records what it made."""
