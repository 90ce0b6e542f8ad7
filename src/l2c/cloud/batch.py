"""Batch transform: predictions for a CSV too big for one endpoint request (6 MB), as SageMaker does it.

`l2c batch NAME INPUT.csv` uploads the file under the stack's prefix of the artifact bucket,
creates a transform job on the stack's current SageMaker model (the one its endpoint serves),
waits for it, downloads ``<input>.out`` and writes the predictions next to the input (or with
the input's columns first, ``--join``). The job's settings are SageMaker's batch settings for
CSV (SageMaker API Reference, CreateTransformJob, TransformInput, TransformOutput; Developer
Guide, "Use batch transform to get inferences from large datasets"): SplitType Line (one
record a line), BatchStrategy MultiRecord (as many records per request as MaxPayloadInMB
allows), AssembleWith Line (one output line per record), text/csv in and out.

The job runs as the model's execution role. l2c's role reads ``<stack>/`` only; a transform job
also writes its output, so the first batch gives the role one more inline policy: s3:PutObject
on ``<stack>/batch/`` of that bucket, nothing else. Destroy removes the role with its policies,
the batch objects with the stack's prefix, and stops a job still running.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from l2c.cloud import iam, s3, sagemaker, tags
from l2c.cloud.progress import ConsoleReporter, Reporter
from l2c.cloud.session import AUTO, CloudError, CloudSession, connect

BATCH_FOLDER = "batch"
JOB_PREFIX = "l2c-"
BATCH_POLICY_NAME = "l2c-batch-transform"
IN_PROGRESS = ("InProgress", "Stopping")
# DescribeTransformJob polling: the waiter TransformJobCompletedOrStopped polls every 60 s
# (botocore sagemaker waiters-2.json); progress is shown more often than that.
POLL_AWS_S = 30.0
WAIT_LIMIT_AWS_S = 3600.0 * 4
MAX_PAYLOAD_MB = 100  # botocore sagemaker model: MaxPayloadInMB 0..100
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@dataclass(frozen=True)
class BatchResult:
    job_name: str
    rows: int
    output: Path
    input_uri: str
    output_uri: str
    seconds: float
    cleaned: bool


def job_prefix(stack: str) -> str:
    """Every transform job of a stack is named ``l2c-<stack>-<time>-<random>``."""
    return f"{JOB_PREFIX}{stack}-"


def new_job_name(stack: str) -> str:
    suffix = f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    name = job_prefix(stack)[: 63 - len(suffix)] + suffix
    assert _JOB_NAME.match(name), name
    return name


def batch_prefix(stack: str) -> str:
    return f"{stack}/{BATCH_FOLDER}/"


def run_batch(
    name: str,
    input_csv: Path | str,
    output_csv: Path | str | None = None,
    *,
    session: CloudSession | None = None,
    target: str = AUTO,
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
    max_payload_mb: int = 6,
    join: bool = False,
    clean: bool = False,
    reporter: Reporter | None = None,
) -> BatchResult:
    """Predict every row of ``input_csv`` with stack ``name``'s model through a transform job."""
    from l2c.cloud.names import check_stack_name

    check_stack_name(name)
    source = Path(input_csv)
    if not source.is_file():
        raise CloudError(f"{source}: no such file")
    if not 1 <= max_payload_mb <= MAX_PAYLOAD_MB:
        raise CloudError(
            f"--max-payload-mb must be 1 to {MAX_PAYLOAD_MB} (SageMaker's MaxPayloadInMB), not {max_payload_mb}"
        )
    if instance_count < 1:
        raise CloudError(f"--instance-count must be at least 1, not {instance_count}")
    destination = Path(output_csv) if output_csv is not None else source.with_name(source.stem + ".out.csv")
    reporter = reporter if reporter is not None else ConsoleReporter()
    session = session or connect(target)
    started = time.monotonic()

    model_name, model = current_model(session, name)
    bucket = _bucket_of(model)
    job = new_job_name(name)
    prefix = f"{batch_prefix(name)}{job}/"
    input_key = f"{prefix}input/{source.name}"
    output_path = s3.s3_uri(bucket, f"{prefix}output")
    allow_batch_writes(session, name, model.get("ExecutionRoleArn", ""), bucket)

    with tempfile.TemporaryDirectory(prefix="l2c-batch-") as scratch:
        header, body = _without_header(source, Path(scratch))
        rows = _count_lines(body)
        if rows == 0:
            raise CloudError(f"{source}: no rows to predict")
        client = session.client("s3")
        with reporter.waiting(f"uploading {rows} row(s) to {s3.s3_uri(bucket, input_key)}"):
            client.upload_file(
                str(body),
                bucket,
                input_key,
                ExtraArgs={"ContentType": "text/csv", "ExpectedBucketOwner": session.account},
            )
        try:
            create_job(
                session,
                name,
                job,
                model_name,
                s3.s3_uri(bucket, f"{prefix}input/"),
                output_path,
                instance_type,
                instance_count,
                max_payload_mb,
            )
            reporter.step(f"transform job {job} on model {model_name} ({instance_count} x {instance_type})")
            description = wait(session, job, reporter)
            if description["TransformJobStatus"] != "Completed":
                raise CloudError(_failure_line(session, job, description))
            downloaded = Path(scratch) / "predictions.out"
            client.download_file(
                bucket,
                f"{prefix}output/{source.name}.out",
                str(downloaded),
                ExtraArgs={"ExpectedBucketOwner": session.account},
            )
            _write_output(body, downloaded, destination, header, join, rows)
        finally:
            if clean:
                s3.delete_keys(session, bucket, s3.list_keys(session, bucket, prefix=prefix))
    reporter.step(f"{rows} prediction(s) written to {destination}" + (" (input columns first)" if join else ""))
    if clean:
        reporter.step(f"deleted the job's objects under s3://{bucket}/{prefix}")
    return BatchResult(
        job, rows, destination, s3.s3_uri(bucket, input_key), output_path, time.monotonic() - started, clean
    )


def current_model(session: CloudSession, name: str) -> tuple[str, dict]:
    """The SageMaker model the stack's endpoint serves now (its config's first variant's)."""
    endpoint = sagemaker.endpoint_name(name)
    description = sagemaker.describe_endpoint(session, endpoint)
    if description is None:
        raise CloudError(f"stack {name} has no endpoint {endpoint}; deploy it first (l2c deploy {name})")
    config = sagemaker.describe_endpoint_config(session, description["EndpointConfigName"])
    if config is None:
        raise CloudError(
            f"endpoint {endpoint}'s configuration {description['EndpointConfigName']} is missing; deploy {name} again"
        )
    model_name = config["ProductionVariants"][0]["ModelName"]
    model = sagemaker.get_model(session, model_name)
    if model is None:
        raise CloudError(f"model {model_name} of stack {name} is missing; deploy {name} again")
    return model_name, model


def _bucket_of(model: dict) -> str:
    url = (model.get("PrimaryContainer") or {}).get("ModelDataUrl", "")
    if not url.startswith("s3://"):
        raise CloudError(f"model {model.get('ModelName')} has no s3:// artifact ({url!r})")
    return url[len("s3://") :].split("/", 1)[0]


def allow_batch_writes(session: CloudSession, name: str, role_arn: str, bucket: str) -> bool:
    """Give l2c's execution role of the stack s3:PutObject on the stack's batch prefix only.

    A role the user gave (--role-arn) is theirs to grant; it is left alone. True when changed."""
    role_name = role_arn.rsplit("/", 1)[-1]
    if role_name != iam.role_name(name, "sagemaker", session.region):
        return False
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteTheBatchOutput",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": f"arn:{session.partition}:s3:::{bucket}/{batch_prefix(name)}*",
            }
        ],
    }
    client = session.client("iam")
    try:
        current = client.get_role_policy(RoleName=role_name, PolicyName=BATCH_POLICY_NAME)["PolicyDocument"]
        if iam._document(current) == document:
            return False
    except ClientError as err:
        if err.response["Error"].get("Code") != "NoSuchEntity":
            raise
    client.put_role_policy(RoleName=role_name, PolicyName=BATCH_POLICY_NAME, PolicyDocument=json.dumps(document))
    return True


def create_job(
    session: CloudSession,
    name: str,
    job: str,
    model_name: str,
    input_uri: str,
    output_path: str,
    instance_type: str,
    instance_count: int,
    max_payload_mb: int,
) -> None:
    try:
        session.client("sagemaker").create_transform_job(
            TransformJobName=job,
            ModelName=model_name,
            BatchStrategy="MultiRecord",
            MaxPayloadInMB=max_payload_mb,
            TransformInput={
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            TransformOutput={"S3OutputPath": output_path, "Accept": "text/csv", "AssembleWith": "Line"},
            TransformResources={"InstanceType": instance_type, "InstanceCount": instance_count},
            Tags=tags.as_tag_list(tags.stack_tags(name)),
        )
    except ClientError as err:
        message = err.response["Error"].get("Message", str(err))
        raise CloudError(f"CreateTransformJob {job}: {err.response['Error'].get('Code')}: {message}") from None


def wait(session: CloudSession, job: str, reporter: Reporter) -> dict:
    """Poll DescribeTransformJob until Completed, Failed or Stopped (TransformJobCompletedOrStopped)."""
    client = session.client("sagemaker")
    delay = session.poll_seconds(POLL_AWS_S)
    deadline = time.monotonic() + session.poll_seconds(WAIT_LIMIT_AWS_S) + 60
    with reporter.waiting(f"transform job {job} InProgress"):
        while True:
            description = client.describe_transform_job(TransformJobName=job)
            if description["TransformJobStatus"] not in IN_PROGRESS:
                return description
            if time.monotonic() > deadline:
                raise CloudError(
                    f"transform job {job} is still {description['TransformJobStatus']}; "
                    "stop it with l2c destroy, or look at it in the SageMaker console"
                )
            time.sleep(delay)


def _failure_line(session: CloudSession, job: str, description: dict) -> str:
    status = description["TransformJobStatus"]
    reason = " ".join(str(description.get("FailureReason") or "no reason given").split())
    return (
        f"transform job {job} {status}: {reason} (logs: CloudWatch /aws/sagemaker/TransformJobs, "
        f"streams {job}/*, region {session.region})"
    )


def stop_jobs(session: CloudSession, name: str, reporter: Reporter | None = None) -> list[str]:
    """Stop the stack's transform jobs still running (destroy: they bill by the instance-hour)."""
    client = session.client("sagemaker")
    stopped = []
    for job in list_jobs(session, name, ("InProgress",)):
        try:
            client.stop_transform_job(TransformJobName=job["TransformJobName"])
        except ClientError as err:
            if err.response["Error"].get("Code") != "ValidationException":
                raise
            continue
        stopped.append(job["TransformJobName"])
    for job_name in stopped:
        _wait_stopped(session, job_name)
        if reporter is not None:
            reporter.step(f"stopped transform job {job_name}")
    return stopped


def _wait_stopped(session: CloudSession, job: str) -> None:
    client = session.client("sagemaker")
    deadline = time.monotonic() + session.poll_seconds(600) + 30
    while client.describe_transform_job(TransformJobName=job)["TransformJobStatus"] in IN_PROGRESS:
        if time.monotonic() > deadline:
            raise CloudError(f"transform job {job} is still stopping; run destroy again in a few minutes")
        time.sleep(session.poll_seconds(POLL_AWS_S))


def list_jobs(session: CloudSession, name: str | None = None, statuses: tuple[str, ...] = ()) -> list[dict]:
    """Transform jobs named like l2c names them (one stack's, or every stack's), of any status or
    of those ``statuses`` only (SageMaker keeps every finished job: asking for the running ones
    keeps the listing short)."""
    paginator = session.client("sagemaker").get_paginator("list_transform_jobs")
    prefix = job_prefix(name) if name else JOB_PREFIX
    filters = [{"StatusEquals": status} for status in statuses] or [{}]
    return [
        job
        for extra in filters
        for page in paginator.paginate(NameContains=prefix, **extra)
        for job in page.get("TransformJobSummaries", [])
        if job["TransformJobName"].startswith(prefix)
    ]


# --------------------------------------------------------------------------- files


def _is_header(line: str) -> bool:
    for field in line.strip().split(","):
        try:
            float(field) if field.strip() else None
        except ValueError:
            return True
    return False


def _without_header(source: Path, scratch: Path) -> tuple[str | None, Path]:
    """A header row is not a record (the container would refuse it): it is kept out of the job."""
    with source.open("r", newline="") as handle:
        first = handle.readline()
        if not _is_header(first):
            return None, source
        body = scratch / source.name
        with body.open("w", newline="") as out:
            shutil.copyfileobj(handle, out, 1024 * 1024)
    return first.rstrip("\r\n"), body


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _write_output(body: Path, predictions: Path, destination: Path, header: str | None, join: bool, rows: int) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = _count_lines(predictions)
    if written != rows:
        raise CloudError(f"the transform job wrote {written} prediction line(s) for {rows} row(s)")
    if not join:
        shutil.copyfile(predictions, destination)
        return
    with (
        body.open("r", newline="") as rows_in,
        predictions.open("r", newline="") as predicted,
        destination.open("w", newline="") as out,
    ):
        if header is not None:
            first = predicted.readline()
            width = first.count(",") + 1
            names = ["prediction"] if width == 1 else [f"prediction_{i}" for i in range(width)]
            out.write(header + "," + ",".join(names) + "\n")
            predicted = _chain_first(first, predicted)
        for row, prediction in zip(rows_in, predicted):
            out.write(row.rstrip("\r\n") + "," + prediction.rstrip("\r\n") + "\n")


def _chain_first(first: str, rest):
    yield first
    yield from rest
