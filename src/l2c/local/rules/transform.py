"""AWS rules for SageMaker batch transform (see :mod:`l2c.local.rules`): a transform job really runs.

moto stores a transform job and calls it ``Completed`` the moment it is created, without
reading a byte; it has no StopTransformJob. On AWS a job is ``InProgress`` while its instances
start (minutes), download the model with the execution role, read every object under the input
prefix, split it into records and send them to the container in mini-batches; it writes one
``<object>.out`` per input object to the output path and ends ``Completed``, or ``Failed`` with
a FailureReason (SageMaker API Reference, CreateTransformJob, DescribeTransformJob,
TransformInput, TransformOutput; Developer Guide, "Use batch transform to get inferences from
large datasets"; botocore's waiters-2.json, TransformJobCompletedOrStopped: Completed and
Stopped succeed, Failed fails).

The rules below do the same with moto as the store: a worker thread waits the instances'
start-up (paced), then streams each input object through the container's own logic
(:class:`l2c.serving.engine.Engine`, text/csv in and out) in a child process, so a booster
that crashes XGBoost takes a job down, not the local cloud.
"""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
import threading
import time
import uuid

from l2c.local.pace import PACE
from l2c.local.rules import RULES, AwsError, Call, Reply
from l2c.local.rules import iam as iam_rules
from l2c.local.rules import sagemaker as sagemaker_rules

log = logging.getLogger("l2c.local.rules")

# Instances of a transform job start like an endpoint's, a few minutes ("Creating the
# transform job takes a few minutes", SageMaker Developer Guide, batch transform notebooks).
START_AWS_S = 240.0
STOP_AWS_S = 30.0
DEFAULT_MAX_PAYLOAD_MB = 6  # CreateTransformJob, MaxPayloadInMB: "The default value is 6 MB"
MAX_PAYLOAD_MB = 100  # botocore sagemaker model, MaxPayloadInMB: min 0, max 100
LOG_GROUP = "/aws/sagemaker/TransformJobs"
# Source: the FailureReason a transform job gets when the container answers 4xx for a
# mini-batch (neo-ai/neo-ai-dlr PR #142, "Batch Transform now shows ClientError: See job logs
# for more information"); a 5xx is the algorithm's fault.
CLIENT_ERROR = "ClientError: See job logs for more information"
ALGORITHM_ERROR = "AlgorithmError: See job logs for more information"

_lock = threading.RLock()
_stop_requested: set[str] = set()


def _job_arn(account: str, region: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:transform-job/{name.lower()}"


def _jobs(account: str, region: str) -> dict:
    return sagemaker_rules._backend(account, region).transform_jobs


def _reply(document: dict) -> Reply:
    return sagemaker_rules._json_reply(document)


# --------------------------------------------------------------------------- create


@RULES.before(
    "sagemaker",
    "CreateTransformJob",
    id="sagemaker.transform-job-create",
    test="tests/integration/test_deploy_batch.py::test_a_transform_job_is_refused_twice_and_for_a_missing_model",
    source="SageMaker API Reference, CreateTransformJob (TransformJobName unique in the account and region; "
    "ModelName must exist; MaxPayloadInMB 0-100, default 6; SplitType None|Line|RecordIO|TFRecord); "
    "botocore sagemaker model, CreateTransformJobRequest",
    summary="Refused when a job of that name exists (moto overwrites it), when the model does not exist, or when "
    "MaxPayloadInMB is outside 0-100: ValidationException.",
)
def check_create(call: Call):
    name = call.params.get("TransformJobName", "")
    with _lock:
        if name in _jobs(call.account, call.region):
            raise AwsError(
                "ValidationException",
                "Job name must be unique within an AWS account and region, and a job with this name "
                f"already exists ({_job_arn(call.account, call.region, name)})",
            )
        model = call.params.get("ModelName", "")
        if model not in sagemaker_rules._backend(call.account, call.region)._models:
            raise AwsError(
                "ValidationException",
                f'Could not find model "arn:aws:sagemaker:{call.region}:{call.account}:model/{model.lower()}".',
            )
    payload = call.params.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)
    if not isinstance(payload, int) or not 0 <= payload <= MAX_PAYLOAD_MB:
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value '{payload}' at 'maxPayloadInMB' failed to satisfy "
            f"constraint: Member must have value less than or equal to {MAX_PAYLOAD_MB}",
        )


@RULES.after(
    "sagemaker",
    "CreateTransformJob",
    id="sagemaker.transform-job-run",
    test="tests/integration/test_deploy_batch.py::test_a_million_rows_through_l2c_batch_equal_in_process_prediction",
    source="SageMaker API Reference, CreateTransformJob, DescribeTransformJob (TransformJobStatus InProgress|"
    "Completed|Failed|Stopping|Stopped), TransformInput (SplitType Line), TransformOutput (one <object>.out "
    "per input object, AssembleWith Line, no partial objects); Developer Guide, batch transform "
    "(BatchStrategy MultiRecord: as many records per request as MaxPayloadInMB allows)",
    summary="The job is InProgress (moto says Completed at once); after the instances' start-up (~240 AWS "
    "seconds) each object under the S3 input prefix is read with the model's execution role, split by line, "
    "sent to the container logic (text/csv) in mini-batches of up to MaxPayloadInMB and its answers written "
    "to <S3OutputPath>/<object>.out; Completed, or Failed with FailureReason when an object or the model "
    "cannot be read, the role may not write the output, or the container refuses a mini-batch.",
)
def run_job(call: Call, reply: Reply):
    name = call.params.get("TransformJobName", "")
    with _lock:
        job = _jobs(call.account, call.region).get(name)
        if job is None:
            return None
        job.transform_job_status = "InProgress"
        job.failure_reason = None
        job.transform_start_time = job.transform_end_time = None
        job.last_modified_time = sagemaker_rules._now()
        _stop_requested.discard(job.arn)
    sagemaker_rules._bump()
    worker = threading.Thread(
        target=_run, args=(call.account, call.region, name, job), name=f"l2c-transform-{name}", daemon=True
    )
    worker.start()
    return None


def _run(account: str, region: str, name: str, job) -> None:
    try:
        time.sleep(PACE.seconds(START_AWS_S))
        with _lock:
            if job.transform_job_status != "InProgress":
                return
            job.transform_start_time = sagemaker_rules._now()
        reason = None if job.arn in _stop_requested else Transform(account, region, job).run()
    except Exception:  # a bug here must not leave the job InProgress for ever
        log.exception("transform job %s failed", name)
        reason = "InternalServerError: We encountered an internal error. Please try again."
    with _lock:
        if job.arn in _stop_requested:
            job.transform_job_status = "Stopped"
        else:
            job.transform_job_status = "Failed" if reason else "Completed"
            job.failure_reason = reason
        job.transform_end_time = job.last_modified_time = sagemaker_rules._now()
        _stop_requested.discard(job.arn)
    sagemaker_rules._bump()


class JobFailed(Exception):
    """A FailureReason, plus the lines the job's logs get."""

    def __init__(self, reason: str, *lines: str):
        super().__init__(reason)
        self.reason, self.lines = reason, list(lines)


class Transform:
    """One job's run: the model in a child process, then every input object through it."""

    def __init__(self, account: str, region: str, job):
        self.account, self.region, self.job = account, region, job
        self.stream = f"{job.transform_job_name}/i-{uuid.uuid4().hex[:17]}"
        inputs = job.transform_input or {}
        self.content_type = inputs.get("ContentType") or "text/csv"
        self.split = inputs.get("SplitType") or "None"
        source = (inputs.get("DataSource") or {}).get("S3DataSource") or {}
        self.input_uri = source.get("S3Uri", "")
        output = job.transform_output or {}
        self.output_uri = output.get("S3OutputPath", "")
        self.accept = output.get("Accept") or "text/csv"
        self.assemble = output.get("AssembleWith") or "None"
        self.multi_record = (job.batch_strategy or "MultiRecord") == "MultiRecord"
        payload_mb = job.max_payload_in_mb if job.max_payload_in_mb is not None else DEFAULT_MAX_PAYLOAD_MB
        # MaxPayloadInMB 0 is "no limit" for streamed (chunked) payloads; the container here
        # takes its own body limit, so 0 means the container's limit.
        self.max_payload = int(payload_mb) * 1024 * 1024 or None
        self.environment = dict(job.environment or {})

    def log(self, *lines: str) -> None:
        write_log(self.account, self.region, self.stream, list(lines))

    def run(self) -> str | None:
        try:
            model, role = self._model()
            self.log(
                f"MaxConcurrentTransforms=1, MaxPayloadInMB={self.job.max_payload_in_mb}, "
                f"BatchStrategy={'MULTI_RECORD' if self.multi_record else 'SINGLE_RECORD'}"
            )
            keys = self._input_keys(role)
            with Container(model, self.environment) as container:
                for bucket, key in keys:
                    if self.job.arn in _stop_requested:
                        return None
                    self._transform_object(container, role, bucket, key)
        except JobFailed as failed:
            if failed.lines:
                self.log(*failed.lines)
            return failed.reason
        return None

    def _model(self) -> tuple[bytes, object]:
        backend = sagemaker_rules._backend(self.account, self.region)
        model = backend._models.get(self.job.model_name)
        if model is None:
            raise JobFailed(
                f'Could not find model "arn:aws:sagemaker:{self.region}:{self.account}:model/'
                f'{self.job.model_name.lower()}".'
            )
        container = model.primary_container or (model.containers or [{}])[0]
        url = container.get("ModelDataUrl", "")
        data, problem = sagemaker_rules._download(self.account, model.execution_role_arn, url)
        if data is None:
            # The same reason an endpoint's instance gives when it cannot fetch the artifact.
            raise JobFailed(
                f'Failed to download model data for container "container_1" from URL: "{url}". Please ensure that '
                "there is an object located at the URL and that the role passed to CreateModel has permissions to "
                "download the object.",
                f"Failed to download model data from {url}: {problem}",
            )
        from l2c.serving.sandbox import CheckUnavailable, check_artifact

        try:
            refusal = check_artifact(data).reason
        except CheckUnavailable as err:
            refusal = str(err)
        if refusal:
            raise JobFailed(ALGORITHM_ERROR, f"Unable to load model: {refusal}")
        role = iam_rules.find_role(self.account, model.execution_role_arn)
        return data, role

    def _input_keys(self, role) -> list[tuple[str, str]]:
        bucket, prefix = _split_uri(self.input_uri)
        s3 = _s3(self.account)
        try:
            found = s3.get_bucket(bucket)
        except Exception:
            raise JobFailed(f"ClientError: Failed to download data. NoSuchBucket: {bucket}") from None
        keys = sorted(name for name in found.keys if name.startswith(prefix) and not name.endswith("/"))
        if not keys:
            # Source: DescribeTransformJob FailureReason when the prefix is empty, as reported in
            # aws/sagemaker-python-sdk issues ("No S3 objects found under S3 URL").
            raise JobFailed(
                f'ClientError: No S3 objects found under S3 URL "{self.input_uri}" given in input data '
                "source. Please ensure that the bucket exists in the selected region, that objects exist "
                "under that S3 prefix, and that the role has permissions to read objects from the bucket."
            )
        for key in keys:
            if role is None or not iam_rules.role_allows(role, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"):
                raise JobFailed(
                    f"ClientError: Failed to download data. AccessDenied: the role passed to CreateModel "
                    f"may not s3:GetObject s3://{bucket}/{key}"
                )
        return [(bucket, key) for key in keys]

    def _output_key(self, bucket: str, key: str) -> tuple[str, str]:
        # TransformOutput.S3OutputPath: each object's output keeps its path below the input
        # prefix's folder and gets ".out" appended.
        _, prefix = _split_uri(self.input_uri)
        folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        out_bucket, out_prefix = _split_uri(self.output_uri)
        out_prefix = out_prefix.rstrip("/") + "/" if out_prefix else ""
        return out_bucket, out_prefix + key[len(folder) :] + ".out"

    def _transform_object(self, container: Container, role, bucket: str, key: str) -> None:
        out_bucket, out_key = self._output_key(bucket, key)
        if not iam_rules.role_allows(role, "s3:PutObject", f"arn:aws:s3:::{out_bucket}/{out_key}"):
            raise JobFailed(
                f"ClientError: Access Denied writing s3://{out_bucket}/{out_key}: the role passed to "
                "CreateModel may not s3:PutObject there",
                f"[sagemaker logs]: {bucket}/{key}: AccessDenied on s3://{out_bucket}/{out_key}",
            )
        data = _s3(self.account).get_object(bucket, key).value
        pieces = []
        for body in self._mini_batches(data, bucket, key):
            if self.job.arn in _stop_requested:
                return
            status, answer = container.invoke(body, self.content_type, self.accept)
            if status != 200:
                # The data log names the object and the container's status and message.
                raise JobFailed(
                    CLIENT_ERROR if 400 <= status < 500 else ALGORITHM_ERROR,
                    f"[sagemaker logs]: {bucket}/{key}: Bad HTTP status received from algorithm: {status}",
                    f"[sagemaker logs]: {bucket}/{key}: {answer.decode('utf-8', 'replace')[:1000]}",
                )
            pieces.append(answer)
            if self.assemble == "Line" and answer and not answer.endswith(b"\n"):
                pieces.append(b"\n")
        del data
        output = b"".join(pieces)
        pieces.clear()
        # Only whole objects are uploaded (TransformOutput: no partially processed objects).
        _s3(self.account).put_object(out_bucket, out_key, output)
        self.log(f"[sagemaker logs]: {bucket}/{key}: wrote s3://{out_bucket}/{out_key} ({len(output)} bytes)")

    def _mini_batches(self, data: bytes, bucket: str, key: str):
        if self.split != "Line":
            yield data  # SplitType None: the whole object is one request
            return
        size, start = len(data), 0
        while start < size:
            if not self.multi_record:
                end = data.find(b"\n", start)
                end = size if end < 0 else end + 1
            elif self.max_payload is None or start + self.max_payload >= size:
                end = size
            else:
                cut = data.rfind(b"\n", start, start + self.max_payload)
                if cut < 0:
                    raise JobFailed(
                        CLIENT_ERROR,
                        f"[sagemaker logs]: {bucket}/{key}: a record is larger than "
                        f"MaxPayloadInMB={self.job.max_payload_in_mb}",
                    )
                end = cut + 1
            body = data[start:end].strip(b"\n")
            start = end
            if body:
                yield body


def write_log(account: str, region: str, stream: str, lines: list[str]) -> None:
    """Lines into /aws/sagemaker/TransformJobs, the one group every transform job of a region logs to
    (SageMaker Developer Guide, "Log groups and streams that Amazon SageMaker AI sends to CloudWatch")."""
    from moto.logs.models import logs_backends

    backend = logs_backends[account][region]
    if LOG_GROUP not in backend.groups:
        backend.create_log_group(LOG_GROUP, tags={})
    if stream not in backend.groups[LOG_GROUP].streams:
        backend.create_log_stream(LOG_GROUP, stream)
    now = int(time.time() * 1000)
    backend.put_log_events(LOG_GROUP, stream, [{"timestamp": now, "message": line} for line in lines])


def _split_uri(uri: str) -> tuple[str, str]:
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix


def _s3(account: str):
    from moto.s3.models import s3_backends

    return s3_backends[account]["aws"]


# --------------------------------------------------------------------------- the container


class Container:
    """The built-in container's ``/invocations`` logic in a child process (framed pipes)."""

    def __init__(self, model: bytes, environment: dict):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "l2c.local.rules.transform"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        _send(self.process.stdin, model)
        _send(self.process.stdin, json.dumps(environment).encode())

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        try:
            _send(self.process.stdin, b"")
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
        try:
            _send(self.process.stdin, json.dumps([content_type, accept]).encode())
            _send(self.process.stdin, body)
            status = struct.unpack(">H", _read_exactly(self.process.stdout, 2))[0]
            return status, _receive(self.process.stdout)
        except (OSError, EOFError):
            code = self.process.poll()
            raise JobFailed(ALGORITHM_ERROR, f"the container exited (code {code}) while predicting") from None


def _send(stream, data: bytes) -> None:
    stream.write(struct.pack(">Q", len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream) -> bytes:
    size = struct.unpack(">Q", _read_exactly(stream, 8))[0]
    return _read_exactly(stream, size)


def _read_exactly(stream, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise EOFError
    return data


def serve(stdin, stdout) -> None:
    """The child's side: load the (already checked) artifact, answer framed requests."""
    from l2c import artifact
    from l2c.serving.engine import ContainerSettings, Engine

    model = artifact.load_artifact_data(_receive(stdin), True)
    engine = Engine(model, ContainerSettings.from_env(json.loads(_receive(stdin))))
    while True:
        header = _receive(stdin)
        if not header:
            return
        content_type, accept = json.loads(header)
        reply = engine.invoke(_receive(stdin), content_type, accept)
        stdout.write(struct.pack(">H", reply.status))
        _send(stdout, reply.body)


# --------------------------------------------------------------------------- stop, describe, list


@RULES.before(
    "sagemaker",
    "StopTransformJob",
    id="sagemaker.transform-job-stop",
    test="tests/integration/test_deploy_batch.py::test_destroy_stops_a_running_transform_job_and_leaves_nothing",
    source="SageMaker API Reference, StopTransformJob (Stopping, then Stopped; DescribeTransformJob); botocore "
    "waiters-2.json TransformJobCompletedOrStopped",
    summary="Answered instead of moto (which lacks it): an InProgress job is Stopping, then Stopped within ~30 AWS "
    "seconds, with no output for unfinished objects; an unknown job is ValidationException 'Could not find "
    "job'; a finished one is left as it is.",
)
def stop_job(call: Call):
    name = call.params.get("TransformJobName", "")
    with _lock:
        job = _jobs(call.account, call.region).get(name)
        if job is None:
            raise AwsError("ValidationException", f"Could not find job to update with name {name}")
        if job.transform_job_status == "InProgress":
            job.transform_job_status = "Stopping"
            job.last_modified_time = sagemaker_rules._now()
            _stop_requested.add(job.arn)
            sagemaker_rules._later(PACE.seconds(STOP_AWS_S), _finish_stop, job)
    sagemaker_rules._bump()
    return _reply({})


def _finish_stop(job) -> None:
    # A worker still starting (sleeping) or between mini-batches sees the request and stops;
    # one that never started (no worker: a cloud restarted) is stopped here.
    if job.transform_job_status == "Stopping" and job.transform_start_time is None:
        job.transform_job_status = "Stopped"
        job.transform_end_time = job.last_modified_time = sagemaker_rules._now()


def _without_empty(document: dict) -> dict:
    # moto answers unset strings of a job as "" (FailureReason, LabelingJobArn) where AWS omits them.
    return sagemaker_rules._without_empty(document, empty=({}, [], "", None))


@RULES.after(
    "sagemaker",
    "DescribeTransformJob",
    id="sagemaker.transform-job-describe",
    test="tests/integration/test_deploy_batch.py::test_a_malformed_row_fails_the_job_with_sagemakers_reason",
    source="botocore sagemaker model, DescribeTransformJobResponse (FailureReason, TransformStartTime, "
    "TransformEndTime, LabelingJobArn, AutoMLJobArn optional)",
    summary="Optional members moto answers empty (FailureReason '', LabelingJobArn '', DataCaptureConfig {}) are "
    "left out, as AWS leaves them out; the times appear once the job has started or ended.",
)
def describe_job(call: Call, reply: Reply):
    return reply.with_json(_without_empty(reply.json()))


@RULES.after(
    "sagemaker",
    "ListTransformJobs",
    id="sagemaker.transform-job-list",
    test="tests/integration/test_deploy_batch.py::test_destroy_stops_a_running_transform_job_and_leaves_nothing",
    source="botocore sagemaker model, TransformJobSummary (FailureReason, TransformEndTime optional)",
    summary="Summaries carry the job's real status and its FailureReason when Failed; empty members left out.",
)
def list_jobs(call: Call, reply: Reply):
    document = reply.json()
    jobs = _jobs(call.account, call.region)
    summaries = []
    for summary in document.get("TransformJobSummaries") or []:
        job = jobs.get(summary.get("TransformJobName"))
        if job is not None and job.failure_reason:
            summary["FailureReason"] = job.failure_reason
        summaries.append(_without_empty(summary))
    document["TransformJobSummaries"] = summaries
    return reply.with_json(_without_empty(document) | {"TransformJobSummaries": summaries})


def _main() -> None:
    import os

    # Frames go to a private copy of stdout; whatever XGBoost prints goes to stderr instead.
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, frames)


if __name__ == "__main__":
    _main()
