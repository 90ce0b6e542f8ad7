"""The artifact bucket: one per account and region, hardened, holding each model version once.

``l2c-<account>-<region>`` needs no configuration and cannot collide with another account's.
Keys carry the model version (the booster's digest), so a new model never overwrites the
object an endpoint was created from, and uploading the same model twice is a no-op.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from l2c.artifact import TARBALL_NAME
from l2c.cloud import tags
from l2c.cloud.session import CloudError, CloudSession

SHA256_METADATA = "sha256"


def bucket_name(session: CloudSession) -> str:
    return f"l2c-{session.account}-{session.region}"


def artifact_key(stack: str, version: str) -> str:
    return f"{stack}/{version}/{TARBALL_NAME}"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def tls_only_policy(bucket: str, partition: str) -> dict:
    """Refuse any request that does not come over TLS (AWS's recommended baseline)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def bucket_exists(session: CloudSession, bucket: str) -> bool:
    try:
        session.client("s3").head_bucket(Bucket=bucket, ExpectedBucketOwner=session.account)
        return True
    except ClientError as err:
        status = err.response["ResponseMetadata"]["HTTPStatusCode"]
        if status == 404:
            return False
        if status == 403:
            raise CloudError(
                f"bucket {bucket} exists but this account cannot use it; delete it or use another region"
            ) from None
        raise


def ensure_bucket(session: CloudSession, bucket: str) -> bool:
    """Create the bucket if needed and (re)apply its hardening; True when it was created."""
    s3 = session.client("s3")
    created = not bucket_exists(session, bucket)
    if created:
        kwargs = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
        if session.region != "us-east-1":  # the one region that refuses a LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": session.region}
        s3.create_bucket(**kwargs)
        s3.get_waiter("bucket_exists").wait(Bucket=bucket)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket, session.partition)))
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags.as_tag_list(tags.shared_tags())})
    return created


def upload_artifact(session: CloudSession, bucket: str, key: str, tar_path: Path, sha256: str) -> bool:
    """Upload unless the same bytes are already there; True when something was written."""
    s3 = session.client("s3")
    try:
        existing = s3.head_object(Bucket=bucket, Key=key)
        if existing.get("Metadata", {}).get(SHA256_METADATA) == sha256:
            return False
    except ClientError as err:
        if err.response["ResponseMetadata"]["HTTPStatusCode"] != 404:
            raise
    stack = key.split("/", 1)[0]
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=Path(tar_path).read_bytes(),
        ContentType="application/gzip",
        Metadata={SHA256_METADATA: sha256},
        Tagging=urlencode(tags.stack_tags(stack)),
    )
    return True


def list_keys(session: CloudSession, bucket: str, prefix: str = "") -> list[str]:
    paginator = session.client("s3").get_paginator("list_objects_v2")
    try:
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
    except ClientError as err:
        if err.response["Error"].get("Code") == "NoSuchBucket":
            return []
        raise


def delete_keys(session: CloudSession, bucket: str, keys: list[str]) -> None:
    s3 = session.client("s3")
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def delete_bucket_if_empty(session: CloudSession, bucket: str) -> bool:
    if not bucket_exists(session, bucket) or list_keys(session, bucket):
        return False
    session.client("s3").delete_bucket(Bucket=bucket)
    return True
