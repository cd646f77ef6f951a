"""AWS helpers every step shares: sessions, one wait-with-progress loop, S3 paths, console links.

Clients are created from a session passed in (``session or boto3.Session()``), never at import
time, so
the same code talks to AWS or, through ``AWS_ENDPOINT_URL``, to the local moto server.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.loaders
import botocore.session
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.parsers import ResponseParserError

from mlops.errors import PipelineError

_LOADER: botocore.loaders.Loader | None = None
_LOADER_LOCK = threading.Lock()


def new_session(**kwargs: Any) -> boto3.Session:
    """``boto3.Session(**kwargs)`` that shares one botocore data loader with every other session
    of this process. Each new session otherwise parses endpoints.json and every service model it
    uses again (0.1-0.4 s each; a whole pipeline run creates about 90 clients in 20 sessions, as
    each job assumes its own role). The loader only caches the read-only JSON files."""
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = botocore.loaders.create_loader()
        core = botocore.session.Session()
        core.register_component("data_loader", _LOADER)
        made = boto3.Session(botocore_session=core, **kwargs)
        # boto3 appends its own data folder to the loader's search path for every session
        _LOADER.search_paths[:] = list(dict.fromkeys(_LOADER.search_paths))
    return made


def session(region: str | None = None) -> boto3.Session:
    """A boto3 session; the region comes from the flag, the environment or the profile."""
    try:  # boto3 reads AWS_DEFAULT_REGION; GitHub's setup and many users set AWS_REGION
        s = new_session(region_name=region or os.environ.get("AWS_REGION") or None)
    except BotoCoreError as exc:
        raise PipelineError(f"cannot create an AWS session: {exc}") from None
    if not s.region_name:
        raise PipelineError("no AWS region: set AWS_REGION or pass --region")
    return s


def call(what: str, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run one AWS call; turn its error into a one-line PipelineError naming what failed."""
    try:
        return fn(**kwargs)
    except NoCredentialsError:
        raise PipelineError(
            f"{what}: no AWS credentials",
            hint="configure credentials, or run offline with make pipeline",
        ) from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise PipelineError(
            f"{what}: {err.get('Code', 'Error')}: {err.get('Message', exc)}"
        ) from None
    except (BotoCoreError, ResponseParserError, S3UploadFailedError) as exc:
        raise PipelineError(f"{what}: {exc}") from None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class WaitResult:
    status: str
    description: dict[str, Any]
    seconds: float


def wait_for(
    what: str,
    describe: Callable[[], dict[str, Any]],
    status_of: Callable[[dict[str, Any]], str],
    *,
    done: set[str],
    failed: set[str],
    link: str = "",
    timeout: float = 4 * 3600,
    poll: float = 0.2,
    max_poll: float = 30.0,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
    reason_of: Callable[[dict[str, Any]], str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Poll until a terminal status; print one line per status change with elapsed time.

    Polling starts fast (at most 1 s apart during the first minute) and then backs off to
    ``max_poll``, so a short or local job is seen done at once and a long cloud job does not hammer
    the API.
    """
    start, last, delay = clock(), None, poll
    if link:
        log(f"  {what}: {link}")
    while True:
        desc = describe()
        status = status_of(desc)
        elapsed = clock() - start
        if on_poll:
            on_poll(desc)
        if status != last:
            log(f"  {what}: {status} after {elapsed:.1f}s")
            last = status
        if status in done:
            return WaitResult(status, desc, elapsed)
        if status in failed:
            reason = (
                (reason_of(desc) if reason_of else "")
                or desc.get("FailureReason")
                or desc.get("ErrorMessage")
                or desc.get("StackStatusReason")
                or "no reason given"
            )
            where = f" (see {link})" if link else ""
            raise PipelineError(f"{what} {status}: {reason}{where}")
        if elapsed > timeout:
            raise PipelineError(f"{what}: still {status} after {elapsed:.0f}s; gave up waiting")
        sleep(delay)
        # Quick polls for the first minute (short jobs, local runs), then back off to max_poll.
        delay = min(delay * 1.5, 0.5 if elapsed < 60 else max_poll)


def console(region: str, fragment: str) -> str:
    """A link to the AWS console page of a resource (printed while waiting)."""
    return f"https://{region}.console.aws.amazon.com/{fragment}"


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise PipelineError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_uri(bucket: str, *parts: str) -> str:
    return "s3://" + "/".join([bucket, *(p.strip("/") for p in parts if p)])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_keys(s3: Any, uri: str) -> list[str]:
    """Every object key under an s3:// prefix (or the one object it names)."""
    bucket, prefix = split_s3(uri)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def download_prefix(s3: Any, uri: str, dest: Path) -> Path:
    """An object, or every object under a prefix, into the directory ``dest`` (layout kept).

    A refused list or read is one line naming the URI and AWS's reason, never a traceback.
    """
    bucket, prefix = split_s3(uri)
    dest.mkdir(parents=True, exist_ok=True)
    for key in call(f"list {uri}", list_keys, s3=s3, uri=uri):
        target = dest / (key[len(prefix) :].lstrip("/") or Path(key).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        call(
            f"download s3://{bucket}/{key}",
            s3.download_file,
            Bucket=bucket,
            Key=key,
            Filename=str(target),
        )
    return dest


def upload_file(s3: Any, path: Path, uri: str, extra: dict[str, Any] | None = None) -> str:
    """One file to ``uri`` (``extra``: upload_file's ExtraArgs, e.g. SSE-KMS)."""
    bucket, key = split_s3(uri)
    call(
        f"upload {path} to {uri}",
        s3.upload_file,
        Filename=str(path),
        Bucket=bucket,
        Key=key,
        ExtraArgs=extra or {},
    )
    return uri


def read_json_object(s3: Any, uri: str) -> Any:
    import json

    bucket, key = split_s3(uri)
    body = call(f"read {uri}", s3.get_object, Bucket=bucket, Key=key)["Body"].read()
    try:
        return json.loads(body)
    except ValueError:
        raise PipelineError(f"{uri} is not valid JSON") from None
