# One image for the three SageMaker roles of the example model:
#   docker run IMAGE train      (training job:   /opt/ml/input -> /opt/ml/model, /opt/ml/output)
#   docker run IMAGE evaluate   (processing job: /opt/ml/processing/{model,test,evaluation})
#   docker run IMAGE serve      (endpoint:       /opt/ml/model, GET /ping + POST /invocations on 8080)
# Runtime dependencies only, pinned in requirements/image.txt (`make lock`, the `model` extra); no
# pyspark (Glue runs the ETL). Build: docker build -t abalone-model:local .   Test: make container-test
FROM python:3.11-slim

LABEL org.opencontainers.image.title="abalone-model" \
      org.opencontainers.image.description="Example SageMaker model: train, evaluate and serve (XGBoost)" \
      org.opencontainers.image.licenses="MIT-0" \
      com.amazonaws.sagemaker.capabilities.accept-bind-to-port="true"

# No .pyc files beside read-only code, logs straight to CloudWatch, matplotlib headless and with a
# cache directory any user can create (the image also runs under `docker run --user`).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /opt/program

# Dependencies first: this layer is rebuilt only when the lock file changes, not on every code edit.
# The libraries' own test suites (~55 MB, mostly scipy's) are never run here: drop them in the same
# layer. Bytecode stays: it is what keeps import, and so /ping after start, fast.
COPY requirements/image.txt requirements/image.txt
RUN python -m pip install --no-cache-dir -r requirements/image.txt \
 && site="$(python -c 'import numpy, pathlib; print(pathlib.Path(numpy.__file__).parents[1])')" \
 && find "$site" -type d -name tests -prune -exec rm -rf {} +

# The model package itself (the build context holds only what .dockerignore lets through).
COPY pyproject.toml ./
COPY src/abalone_model src/abalone_model
RUN python -m pip install --no-cache-dir --no-deps . \
 && rm -rf /opt/program/* \
 && python -c "from abalone_model.schema import Schema; Schema.load()"

# SageMaker runs the image as root and mounts /opt/ml owned by root, so root stays the default user;
# the code is world-readable, so a local `docker run --user UID` works too for serve and evaluate.
EXPOSE 8080
ENTRYPOINT ["python", "-m", "abalone_model"]
