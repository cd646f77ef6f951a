"""The pipeline: configuration, one module per step, shared AWS helpers and the local runtime.

It knows nothing of abalone: it runs whatever model package the configuration names.
"""
