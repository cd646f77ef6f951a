"""Local endpoints: the real inference server per endpoint, behind a sagemaker-runtime router.

boto3's ``invoke_endpoint`` reaches the router through ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``; the
router forwards to the endpoint's server, answers model errors as SageMaker does (HTTP 424
ModelError with the container's status) and writes data capture in SageMaker's JSON Lines format.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mlops.aws import split_s3

VARIANT = "AllTraffic"


@dataclass
class Served:
    name: str
    port: int
    process: subprocess.Popen
    capture: dict[str, Any]
    session: Any = None  # the execution role's: capture is written as it
    records: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def extract(tarball: Path, dest: Path) -> None:
    """Unpack model.tar.gz as SageMaker does, refusing links and paths that leave ``dest``."""
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not (member.isfile() or member.isdir()) or dest.resolve() not in (
                target,
                *target.parents,
            ):
                raise RuntimeError(f"unsafe member {member.name!r} in {tarball.name}")
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, **safe)  # noqa: S202 (members checked above)


PORTS_FROM = 20000  # below the kernel's ephemeral range (Linux default 32768-60999)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port a child server will bind, chosen OUTSIDE the ephemeral range.

    The port is free now and bound by the child a moment later, while the parent polls it. An
    ephemeral port (bind to 0) can be handed meanwhile to any process that binds port 0, such
    as a Spark driver's result socket, which then takes the poll's bytes as a length prefix and
    runs out of heap. Ports below the ephemeral range are only ever given out by choice.
    """
    high = max(_ephemeral_low(), PORTS_FROM + 1000)
    for _ in range(200):
        port = random.randrange(PORTS_FROM, high)  # noqa: S311 (a port, not a secret)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {PORTS_FROM}-{high}")


class Endpoints:
    def __init__(self, runtime: Any, port: int = 0) -> None:
        self.rt = runtime
        self.served: dict[str, Served] = {}
        self.router = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.router.daemon_threads = True
        threading.Thread(target=self.router.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router.server_address[1]}"

    def model_data(self, model_name: str) -> str:
        sm = self.rt.session.client("sagemaker")
        container = sm.describe_model(ModelName=model_name)["PrimaryContainer"]
        if container.get("ModelPackageName"):
            package = sm.describe_model_package(ModelPackageName=container["ModelPackageName"])
            return package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        return container["ModelDataUrl"]

    def serve(self, endpoint: Any, config: Any) -> None:
        """Start the endpoint's server; InService once /ping answers, Failed with the reason."""
        name = endpoint.endpoint_name
        try:
            reason = self.rt.faults.endpoint_failure(name)
            if reason:
                raise RuntimeError(reason)
            model_dir = self.rt.work_dir / f"endpoint-{name}-{uuid.uuid4().hex[:8]}"
            model_dir.mkdir(parents=True)
            model_name = config.production_variants[0]["ModelName"]
            bucket, key = split_s3(self.model_data(model_name))
            tarball = model_dir / "model.tar.gz"
            role = self.rt.session.client("sagemaker").describe_model(ModelName=model_name)
            session = self.rt.role_session(role["ExecutionRoleArn"], "sagemaker")
            session.client("s3").download_file(bucket, key, str(tarball))
            extract(tarball, model_dir / "model")
            port = free_port()
            env = {
                **self.rt.child_env,
                "SAGEMAKER_BIND_TO_PORT": str(port),
                "SM_MODEL_DIR": str(model_dir / "model"),
                "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
            }
            proc = subprocess.Popen(
                [*self.rt.entrypoint, "serve"],
                env=env,
                cwd=model_dir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            self._wait_ready(proc, port)
            old = self.served.get(name)
            self.served[name] = Served(name, port, proc, config.data_capture_config or {}, session)
            if old:
                self._stop(old)
            endpoint.endpoint_status = "InService"
        except Exception as exc:  # any failure is the endpoint's FailureReason, as on AWS
            endpoint.failure_reason = str(exc)[:1024]
            endpoint.endpoint_status = "Failed"

    @staticmethod
    def _wait_ready(proc: subprocess.Popen, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = (proc.stderr.read().decode(errors="replace") if proc.stderr else "").strip()
                raise RuntimeError(
                    f"the inference server exited ({proc.returncode}): "
                    f"{err.splitlines()[-1] if err else 'no output'}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        proc.kill()
        raise RuntimeError(f"the inference server did not answer /ping within {timeout:.0f}s")

    def stop(self, name: str) -> None:
        served = self.served.pop(name, None)
        if served:
            self._stop(served)

    def _stop(self, served: Served) -> None:
        self.flush(served)
        served.process.terminate()
        try:
            served.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            served.process.kill()

    def stop_all(self) -> None:
        for name in list(self.served):
            self.stop(name)
        self.router.shutdown()

    # --- data capture -------------------------------------------------------------------------
    def capture(
        self, served: Served, request: tuple[str, bytes], response: tuple[str, bytes]
    ) -> None:
        cfg = served.capture
        sample = random.uniform(0, 100)  # noqa: S311 (sampling, not security)
        if not cfg.get("EnableCapture") or sample >= float(cfg.get("InitialSamplingPercentage", 0)):
            return
        record = {
            "captureData": {
                "endpointInput": _payload("INPUT", *request),
                "endpointOutput": _payload("OUTPUT", *response),
            },
            "eventMetadata": {
                "eventId": str(uuid.uuid4()),
                "inferenceTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "eventVersion": "0",
        }
        with served.lock:
            served.records.append(json.dumps(record))
            full = len(served.records) >= 25
        if full:
            self.flush(served)

    def flush(self, served: Served) -> None:
        """Write buffered records as one JSON Lines object, laid out as SageMaker does."""
        with served.lock:
            records, served.records = served.records, []
        if not records or not served.capture.get("DestinationS3Uri"):
            return
        bucket, prefix = split_s3(served.capture["DestinationS3Uri"])
        key = "/".join(
            filter(
                None,
                [
                    prefix.rstrip("/"),
                    served.name,
                    VARIANT,
                    datetime.now(UTC).strftime("%Y/%m/%d/%H"),
                    f"{uuid.uuid4()}.jsonl",
                ],
            )
        )
        served.session.client("s3").put_object(  # as the endpoint's execution role
            Bucket=bucket, Key=key, Body="\n".join(records).encode() + b"\n"
        )

    def flush_all(self) -> None:
        for served in list(self.served.values()):
            self.flush(served)


def _payload(mode: str, content_type: str, body: bytes) -> dict[str, str]:
    kind = content_type.split(";")[0].strip().lower()
    encoding = {"text/csv": "CSV", "application/json": "JSON"}.get(kind)
    try:
        data = body.decode() if encoding else None
    except UnicodeDecodeError:
        data = None
    if data is None:
        encoding, data = "BASE64", base64.b64encode(body).decode()
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def _handler(endpoints: Endpoints) -> type[BaseHTTPRequestHandler]:
    class Router(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

        def log_message(self, *args: Any) -> None:  # quiet: the pipeline prints its own lines
            return

        def do_POST(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "invocations":
                return self._reply(404, "application/json", b'{"message": "unknown path"}')
            denied = endpoints.rt.authorize_invoke(self.headers, parts[1])
            if denied:
                return self._reply(
                    403,
                    "application/json",
                    json.dumps({"message": denied}).encode(),
                    {"x-amzn-ErrorType": "AccessDeniedException:"},
                )
            served = endpoints.served.get(parts[1])
            if served is None:
                msg = f"Endpoint {parts[1]} of account 123456789012 not found."
                return self._reply(
                    400,
                    "application/json",
                    json.dumps({"message": msg}).encode(),
                    {"x-amzn-ErrorType": "ValidationError:"},
                )
            content_type = self.headers.get("Content-Type", "application/octet-stream")
            if endpoints.rt.faults.active("system-test") and "-dev" in served.name:
                status, rtype, rbody = 500, "text/plain", b"injected fault: model crashed"
            else:
                status, rtype, rbody = self._forward(served, body, content_type)
            if status >= 400:
                return self._model_error(status, rbody)
            endpoints.capture(served, (content_type, body), (rtype, rbody))
            self._reply(200, rtype, rbody, {"x-Amzn-Invoked-Production-Variant": VARIANT})

        def _forward(
            self, served: Served, body: bytes, content_type: str
        ) -> tuple[int, str, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
            headers = {"Content-Type": content_type, "Accept": self.headers.get("Accept", "*/*")}
            conn.request("POST", "/invocations", body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", ""), resp.read()

        def _model_error(self, status: int, body: bytes) -> None:
            text = body.decode(errors="replace")
            kind = "client" if status < 500 else "server"
            payload = {
                "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
                "OriginalStatusCode": status,
                "OriginalMessage": text,
                "Message": f'Received {kind} error ({status}) from primary with message "{text}"',
            }
            self._reply(
                424,
                "application/json",
                json.dumps(payload).encode(),
                {"x-amzn-ErrorType": "ModelError:"},
            )

        def _reply(
            self, status: int, ctype: str, body: bytes, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Router
