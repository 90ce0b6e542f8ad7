"""Batch transform against the session's local cloud: `l2c batch` on a deployed iris stack.

The local cloud runs the job for real (l2c.local.rules.transform): it reads the uploaded CSV
from S3, sends it to the container's logic in mini-batches and writes ``<input>.out``. The
tests run in file order on one deployment; the last one destroys it and lists every service.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError

from l2c import artifact
from l2c.cloud import batch, inventory, s3, stack, teardown
from l2c.cloud.progress import Reporter
from l2c.cloud.session import CloudError
from l2c.datasets import load_built_in
from l2c.local.rules import transform

MILLION = 1_000_000
# The whole million-row run (upload, job, download, compare) on the suite's 2-core machine.
MILLION_ROWS_LIMIT_S = 180


@pytest.fixture(scope="module")
def deployed(cloud_session, trained_models):
    deployment = stack.deploy("iris", trained_models["iris"], session=cloud_session, reporter=Reporter())
    yield deployment
    teardown.destroy(everything=True, session=cloud_session, reporter=Reporter())


@pytest.fixture(scope="module")
def booster(trained_models):
    return artifact.load_artifact(trained_models["iris"] / "model.tar.gz").booster


def iris_rows(count: int, seed: int = 0) -> np.ndarray:
    """The iris features repeated and jittered to ``count`` rows, at two decimals as a CSV has them."""
    features = load_built_in("iris").features.to_numpy(dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = features[rng.integers(0, len(features), count)] + rng.normal(0, 0.2, (count, features.shape[1]))
    return np.round(np.clip(rows, 0.0, None), 2)


def write_csv(path: Path, rows: np.ndarray, header: str | None = None) -> Path:
    with path.open("w") as out:
        if header:
            out.write(header + "\n")
        np.savetxt(out, rows, fmt="%.2f", delimiter=",")
    return path


def read_predictions(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)


def batch_keys(session, job: str | None = None) -> list[str]:
    bucket = s3.bucket_name(session)
    prefix = batch.batch_prefix("iris") + (f"{job}/" if job else "")
    return s3.list_keys(session, bucket, prefix=prefix)


def test_a_million_rows_through_l2c_batch_equal_in_process_prediction(deployed, cloud_session, booster, tmp_path):
    rows = iris_rows(MILLION)
    source = write_csv(tmp_path / "million.csv", rows)
    started = time.monotonic()
    result = batch.run_batch("iris", source, session=cloud_session, reporter=Reporter())
    seconds = time.monotonic() - started
    assert result.output == tmp_path / "million.out.csv"
    assert result.rows == MILLION
    predicted = read_predictions(result.output)
    expected = booster.inplace_predict(rows.astype(np.float32))
    assert predicted.shape == expected.shape == (MILLION, 3)
    np.testing.assert_allclose(predicted, expected, rtol=0, atol=1e-6)
    assert seconds < MILLION_ROWS_LIMIT_S, f"{MILLION} rows took {seconds:.0f} s"
    description = cloud_session.client("sagemaker").describe_transform_job(TransformJobName=result.job_name)
    assert description["TransformJobStatus"] == "Completed"
    assert "FailureReason" not in description
    assert description["TransformInput"]["SplitType"] == "Line"
    assert description["BatchStrategy"] == "MultiRecord"
    assert description["TransformOutput"]["AssembleWith"] == "Line"
    # The output object is named after the input object, with .out, under S3OutputPath.
    assert f"{batch.batch_prefix('iris')}{result.job_name}/output/million.csv.out" in batch_keys(
        cloud_session, result.job_name
    )


def test_a_malformed_row_fails_the_job_with_sagemakers_reason(deployed, cloud_session, tmp_path):
    source = tmp_path / "bad.csv"
    source.write_text("5.1,3.5,1.4,0.2\n6.2,abc,4.5,1.5\n")
    with pytest.raises(CloudError) as failed:
        batch.run_batch("iris", source, session=cloud_session, reporter=Reporter())
    message = str(failed.value)
    assert "\n" not in message
    assert f"Failed: {transform.CLIENT_ERROR}" in message
    job = batch.list_jobs(cloud_session, "iris")
    failed_jobs = [j for j in job if j["TransformJobStatus"] == "Failed"]
    assert len(failed_jobs) == 1
    name = failed_jobs[0]["TransformJobName"]
    description = cloud_session.client("sagemaker").describe_transform_job(TransformJobName=name)
    assert description["TransformJobStatus"] == "Failed"
    assert description["FailureReason"] == "ClientError: See job logs for more information"
    # No partial output: the object failed, so no .out was written.
    assert not [key for key in batch_keys(cloud_session, name) if key.endswith(".out")]
    assert not (tmp_path / "bad.out.csv").exists()
    logs = cloud_session.client("logs")
    streams = logs.describe_log_streams(logGroupName=transform.LOG_GROUP, logStreamNamePrefix=name)["logStreams"]
    events = logs.get_log_events(logGroupName=transform.LOG_GROUP, logStreamName=streams[0]["logStreamName"])["events"]
    assert any("Bad HTTP status received from algorithm: 415" in e["message"] for e in events)


def test_l2c_batch_exits_non_zero_with_one_line_on_a_failed_job(deployed, local_cloud, tmp_path):
    source = tmp_path / "bad.csv"
    source.write_text("5.1,3.5,1.4,0.2\n6.2,abc,4.5,1.5\n")
    result = subprocess.run(
        [sys.executable, "-m", "l2c.cli", "batch", "iris", str(source)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        timeout=300,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() + result.stdout.splitlines() if "ClientError" in line]
    assert len(errors) == 1 and "Failed" in errors[0], result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_join_appends_the_predictions_and_clean_leaves_no_batch_objects(deployed, cloud_session, booster, tmp_path):
    rows = iris_rows(500, seed=1)
    header = "sepal_length,sepal_width,petal_length,petal_width"
    source = write_csv(tmp_path / "rows.csv", rows, header)
    result = batch.run_batch(
        "iris",
        source,
        tmp_path / "joined.csv",
        session=cloud_session,
        join=True,
        clean=True,
        max_payload_mb=1,
        reporter=Reporter(),
    )
    lines = (tmp_path / "joined.csv").read_text().splitlines()
    assert lines[0] == header + ",prediction_0,prediction_1,prediction_2"
    assert len(lines) == 501
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    np.testing.assert_array_equal(table[:, :4], rows)
    np.testing.assert_allclose(table[:, 4:], booster.inplace_predict(rows.astype(np.float32)), rtol=0, atol=1e-6)
    assert result.cleaned
    assert batch_keys(cloud_session, result.job_name) == []


def test_a_transform_job_is_refused_twice_and_for_a_missing_model(deployed, cloud_session, tmp_path):
    sm = cloud_session.client("sagemaker")
    job = batch.list_jobs(cloud_session, "iris")[0]
    description = sm.describe_transform_job(TransformJobName=job["TransformJobName"])
    again = {
        key: description[key]
        for key in ("TransformJobName", "ModelName", "TransformInput", "TransformOutput", "TransformResources")
    }
    with pytest.raises(ClientError) as twice:
        sm.create_transform_job(**again)
    assert twice.value.response["Error"]["Code"] == "ValidationException"
    assert "already exists" in twice.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as missing:
        sm.create_transform_job(**{**again, "TransformJobName": "l2c-other-job", "ModelName": "no-such-model"})
    assert missing.value.response["Error"]["Code"] == "ValidationException"
    assert "Could not find model" in missing.value.response["Error"]["Message"]


def test_destroy_stops_a_running_transform_job_and_leaves_nothing(deployed, cloud_session, paced, tmp_path):
    from aws_helpers import everything_l2c_left

    paced(0.05)  # the instances' start-up lasts 240 x 0.05 = 12 s: the job is seen running
    model_name, model = batch.current_model(cloud_session, "iris")
    bucket = s3.bucket_name(cloud_session)
    job = batch.new_job_name("iris")
    prefix = f"{batch.batch_prefix('iris')}{job}/"
    cloud_session.client("s3").put_object(
        Bucket=bucket,
        Key=f"{prefix}input/rows.csv",
        Body=b"5.1,3.5,1.4,0.2\n",
        ExpectedBucketOwner=cloud_session.account,
    )
    batch.create_job(
        cloud_session,
        "iris",
        job,
        model_name,
        s3.s3_uri(bucket, f"{prefix}input/"),
        s3.s3_uri(bucket, f"{prefix}output"),
        "ml.m5.large",
        1,
        6,
    )
    running = [r for r in inventory.status(cloud_session).of("iris") if r.kind == "transform-job"]
    assert [r.name for r in running] == [job]
    assert running[0].detail == "InProgress, billed per instance-hour until it ends"
    report = teardown.destroy(everything=True, session=cloud_session, reporter=Reporter())
    assert f"transform job {job} (stopped)" in report.deleted
    assert (
        cloud_session.client("sagemaker").describe_transform_job(TransformJobName=job)["TransformJobStatus"]
        == "Stopped"
    )
    assert everything_l2c_left(cloud_session) == []
    assert not s3.bucket_exists(cloud_session, bucket)
