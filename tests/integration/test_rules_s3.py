"""S3 bucket names are global: two accounts of the local cloud share one namespace, as on AWS.

Two real accounts: the local cloud's default credentials, and credentials from STS AssumeRole
into a role of another account (111122223333, the documentation's placeholder), which the
control plane maps to that account as AWS does. The naming tests at the end drive the edge
in-process, to show that only CreateBucket is read by the rule and an upload's body streams.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

OTHER_ACCOUNT = "111122223333"


def s3_client(credentials: dict, region: str = "us-east-1"):
    return boto3.client("s3", region_name=region, endpoint_url=os.environ["AWS_ENDPOINT_URL"], **credentials)


@pytest.fixture(scope="module")
def ours(local_cloud) -> dict:
    return {
        "aws_access_key_id": local_cloud.env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": local_cloud.env["AWS_SECRET_ACCESS_KEY"],
    }


@pytest.fixture(scope="module")
def theirs(local_cloud, ours) -> dict:
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=local_cloud.env["AWS_ENDPOINT_URL"], **ours)
    granted = sts.assume_role(
        RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/l2c-test-other-account", RoleSessionName="rules-s3"
    )
    credentials = {
        "aws_access_key_id": granted["Credentials"]["AccessKeyId"],
        "aws_secret_access_key": granted["Credentials"]["SecretAccessKey"],
        "aws_session_token": granted["Credentials"]["SessionToken"],
    }
    who = boto3.client("sts", region_name="us-east-1", endpoint_url=local_cloud.env["AWS_ENDPOINT_URL"], **credentials)
    assert who.get_caller_identity()["Account"] == OTHER_ACCOUNT
    return credentials


@pytest.fixture
def bucket_name():
    return f"l2c-test-global-{uuid.uuid4().hex[:12]}"


def refusal(call) -> tuple[str, int, dict]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]


def delete_everywhere(name: str, *clients) -> None:
    for client in clients:
        try:
            for item in client.list_objects_v2(Bucket=name).get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
            client.delete_bucket(Bucket=name)
        except ClientError:
            pass


def test_a_bucket_name_another_account_owns_is_refused(local_cloud, ours, theirs, bucket_name):
    s3_client(ours).create_bucket(Bucket=bucket_name)
    try:
        code, status, error = refusal(lambda: s3_client(theirs).create_bucket(Bucket=bucket_name))
        assert (code, status) == ("BucketAlreadyExists", 409)
        assert error["BucketName"] == bucket_name and "shared by all users" in error["Message"]
        # Another region is the same namespace.
        elsewhere = s3_client(theirs, "eu-west-1")
        code, status, _ = refusal(
            lambda: elsewhere.create_bucket(
                Bucket=bucket_name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
            )
        )
        assert (code, status) == ("BucketAlreadyExists", 409)
        assert bucket_name not in {bucket["Name"] for bucket in s3_client(theirs).list_buckets()["Buckets"]}
        assert "s3 CreateBucket refused by the AWS rules: BucketAlreadyExists" in local_cloud.log_tail(200)
    finally:
        delete_everywhere(bucket_name, s3_client(ours))


def test_your_own_bucket_is_yours_again_only_in_us_east_1(ours, bucket_name):
    s3 = s3_client(ours)
    s3.create_bucket(Bucket=bucket_name)
    europe = s3_client(ours, "eu-west-1")
    european = bucket_name + "-eu"
    try:
        # us-east-1 keeps S3's legacy answer: 200 OK for a bucket you already own there.
        assert s3.create_bucket(Bucket=bucket_name)["ResponseMetadata"]["HTTPStatusCode"] == 200
        europe.create_bucket(Bucket=european, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        code, status, error = refusal(
            lambda: europe.create_bucket(Bucket=european, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        )
        assert (code, status) == ("BucketAlreadyOwnedByYou", 409) and error["BucketName"] == european
    finally:
        delete_everywhere(bucket_name, s3)
        delete_everywhere(european, europe)


def test_a_deleted_name_is_free_for_anyone(ours, theirs, bucket_name):
    s3_client(ours).create_bucket(Bucket=bucket_name)
    s3_client(ours).delete_bucket(Bucket=bucket_name)
    try:
        s3_client(theirs).create_bucket(Bucket=bucket_name)
        code, status, _ = refusal(lambda: s3_client(ours).create_bucket(Bucket=bucket_name))
        assert (code, status) == ("BucketAlreadyExists", 409)
    finally:
        delete_everywhere(bucket_name, s3_client(theirs))


def test_other_bucket_calls_and_uploads_are_not_taken_for_create_bucket(ours, bucket_name):
    s3 = s3_client(ours)
    s3.create_bucket(Bucket=bucket_name)
    body = os.urandom(8 * 1024 * 1024)
    try:
        # PUT /{Bucket}?tagging shares CreateBucket's path; naming it CreateBucket would refuse it.
        s3.put_bucket_tagging(Bucket=bucket_name, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
        s3.put_object(Bucket=bucket_name, Key="big/model.tar.gz", Body=body)
        stored = s3.get_object(Bucket=bucket_name, Key="big/model.tar.gz")["Body"].read()
        assert hashlib.sha256(stored).digest() == hashlib.sha256(body).digest()
    finally:
        delete_everywhere(bucket_name, s3)


# --------------------------------------------------------------------------- the edge, in-process


class ReadOnce(io.BytesIO):
    """A request body that counts who read it."""

    reads = 0

    def read(self, *args):
        self.reads += 1
        return super().read(*args)


def signed_environ(method: str, path: str, query: str = "", body: bytes = b"", host: str = "127.0.0.1:4566") -> dict:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": host,
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20261202/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
        "wsgi.input": ReadOnce(body),
    }


def run_edge(environ) -> tuple[str, object]:
    from l2c.local.edge import Edge
    from l2c.local.rules import load_all

    seen = {}

    def moto(env, start_response):
        seen["input"] = env["wsgi.input"]
        start_response("200 OK", [])
        return [b""]

    statuses = []
    Edge(moto, load_all())(environ, lambda status, headers: statuses.append(status))
    return statuses[0], seen.get("input")


def test_an_upload_reaches_moto_unread_by_the_edge():
    environ = signed_environ("PUT", "/some-bucket/big/model.tar.gz", "x-id=PutObject", b"x" * 1024)
    original = environ["wsgi.input"]
    status, given = run_edge(environ)
    assert status.startswith("200") and given is original and original.reads == 0


def test_only_a_create_bucket_request_is_named_create_bucket():
    from l2c.local.edge import OperationIndex

    index = OperationIndex()
    assert index.match_rest("s3", "PUT", "/b", "")[0] == "CreateBucket"
    assert index.match_rest("s3", "PUT", "/b", "tagging")[0] == "PutBucketTagging"
    assert index.match_rest("s3", "PUT", "/b", "acl")[0] == "PutBucketAcl"
    assert index.match_rest("s3", "GET", "/b", "list-type=2")[0] == "ListObjectsV2"
    # PutObject and CopyObject share a URI (a header tells them apart); neither is CreateBucket.
    assert index.match_rest("s3", "PUT", "/b/k", "")[0] in ("PutObject", "CopyObject")


def test_a_virtual_hosted_request_is_not_taken_for_create_bucket():
    # The bucket in the Host name, an object key in the path: the rule must leave it to moto.
    from l2c.local.rules import Call
    from l2c.local.rules.s3 import addressed_by_host, bucket_names_are_global

    virtual = Call(
        "s3",
        "CreateBucket",
        {"Bucket": "key"},
        "us-east-1",
        "123456789012",
        "testing",
        {"host": "my-bucket.s3.amazonaws.com"},
    )
    path_style = Call(
        "s3", "CreateBucket", {"Bucket": "b"}, "us-east-1", "123456789012", "testing", {"host": "127.0.0.1:4566"}
    )
    assert addressed_by_host(virtual) and not addressed_by_host(path_style)
    assert bucket_names_are_global(virtual) is None
