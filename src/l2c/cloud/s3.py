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
    """Delete the keys for good: every version and delete marker when versioning was ever on.

    DeleteObjects answers 200 even when it deleted nothing: each refusal (AccessDenied, an
    object lock, ...) is an entry of ``Errors``, which is read and reported here."""
    if not keys:
        return
    wanted = set(keys)
    if versioning_ever_enabled(session, bucket):
        targets = [item for prefix in _common_prefixes(wanted) for item in _versions(session, bucket, prefix)]
        targets = [item for item in targets if item["Key"] in wanted]
    else:
        targets = [{"Key": key} for key in keys]
    _delete_objects(session, bucket, targets)


def versioning_ever_enabled(session: CloudSession, bucket: str) -> bool:
    """Enabled or Suspended: a suspended bucket still holds the versions written before."""
    return session.client("s3").get_bucket_versioning(Bucket=bucket).get("Status") in {"Enabled", "Suspended"}


def _common_prefixes(keys: set[str]) -> set[str]:
    # One listing per stack folder rather than one per key.
    return {key.split("/", 1)[0] + "/" if "/" in key else key for key in keys}


def _versions(session: CloudSession, bucket: str, prefix: str) -> list[dict]:
    paginator = session.client("s3").get_paginator("list_object_versions")
    found = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            found.append({"Key": item["Key"], "VersionId": item["VersionId"]})
    return found


def _delete_objects(session: CloudSession, bucket: str, targets: list[dict]) -> None:
    s3 = session.client("s3")
    failed = []
    for start in range(0, len(targets), 1000):  # DeleteObjects takes at most 1000 keys
        batch = targets[start : start + 1000]
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}, ExpectedBucketOwner=session.account)
        failed += answer.get("Errors", [])
    if failed:
        shown = "; ".join(
            f"{item.get('Key')}{' version ' + item['VersionId'] if item.get('VersionId') else ''}: "
            f"{item.get('Code')} ({item.get('Message')})"
            for item in failed[:5]
        )
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise CloudError(f"S3 refused to delete {len(failed)} object(s) in {bucket}: {shown}{more}")


def remaining_versions(session: CloudSession, bucket: str, prefix: str = "") -> list[dict]:
    """Object versions and delete markers left (a versioned bucket cannot be deleted with any)."""
    try:
        return _versions(session, bucket, prefix)
    except ClientError as err:
        if err.response["Error"].get("Code") == "NoSuchBucket":
            return []
        raise


def delete_bucket_if_empty(session: CloudSession, bucket: str) -> bool:
    if not bucket_exists(session, bucket) or list_keys(session, bucket):
        return False
    if versioning_ever_enabled(session, bucket):
        # Only versions and delete markers of deleted objects are left: they would make
        # DeleteBucket fail with BucketNotEmpty.
        _delete_objects(session, bucket, remaining_versions(session, bucket))
    session.client("s3").delete_bucket(Bucket=bucket, ExpectedBucketOwner=session.account)
    return True
