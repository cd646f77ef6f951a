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
# Everything is installed exactly as pinned; then, in the same layer (or the bytes stay in the
# image), what the model never loads is dropped (~110 MB):
# - scipy (a hard dependency of xgboost, ~110 MB with its OpenBLAS) down to scipy.sparse, the one
#   part xgboost imports (`import scipy.sparse` in xgboost.core; xgboost.sklearn's scipy.special
#   import is optional and we never use the sklearn API). A model that needs more of scipy
#   (stats, optimize, ...) keeps it by editing the `find "$site/scipy"` line below.
# - botocore's models of every AWS service but CloudWatch (~20 MB): boto3 is here only for the
#   Monitor step's drift metrics (abalone_model.metrics). A model that calls more services keeps
#   their folders by adding `! -name <service>` to the `find "$site/botocore/data"` line.
# - the libraries' own test suites, C/Cython sources and headers, type stubs, matplotlib's
#   sample data: none is read at run time.
# The import check fails the build if a new pin needs something pruned. Bytecode stays: it is what
# keeps import, and so /ping after start, fast.
COPY requirements/image.txt requirements/image.txt
RUN python -m pip install --no-cache-dir -r requirements/image.txt \
 && site="$(python -c 'import numpy, pathlib; print(pathlib.Path(numpy.__file__).parents[1])')" \
 && find "$site" -type d -name tests -prune -exec rm -rf {} + \
 && find "$site" -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name '*.pyx' \
      -o -name '*.pxd' -o -name '*.pyi' \) -delete \
 && find "$site/scipy" -mindepth 1 -maxdepth 1 -type d \
      ! -name _lib ! -name sparse ! -name __pycache__ -exec rm -rf {} + \
 && rm -rf "$site/scipy.libs" "$site/scipy/sparse/linalg" "$site/scipy/sparse/csgraph" \
      "$site/matplotlib/mpl-data/sample_data" \
 && find "$site/botocore/data" -mindepth 1 -maxdepth 1 -type d ! -name cloudwatch -exec rm -rf {} + \
 && python -c 'import xgboost, scipy.sparse, matplotlib.backends.backend_agg' \
 && python -c 'import boto3; boto3.client("cloudwatch", region_name="us-east-1")'

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
