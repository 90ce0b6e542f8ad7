"""The artifact bucket: one per account and region, hardened, holding each model version once.

The name must be one nobody else can take. A general purpose bucket name is global: whoever
creates ``l2c-<account>-<region>`` first owns it, and once l2c's destroy deletes it, anyone may
create it again and receive the next deploy's artifact, or serve SageMaker a model of their
own (S3 User Guide, "Namespaces for general purpose buckets"). So l2c's bucket lives in the
account's *account regional namespace*, ``l2c-<account>-<region>-an``, created with
CreateBucket's ``x-amz-bucket-namespace: account-regional`` header: only this account can
ever create a name there (S3 User Guide, gpbucketnamespaces; botocore's s3 model,
CreateBucketRequest.BucketNamespace). Where S3 does not offer that namespace, the old global
name is used, and a bucket an earlier l2c made under it is kept until destroy removes it.
``--bucket NAME`` uses a bucket of the user's choice instead.

Every call on the bucket carries ``ExpectedBucketOwner`` (the session's account): S3 answers
403 when someone else owns the bucket, so nothing is ever written to or read from a bucket
that merely has the expected name (S3 User Guide, "Verifying bucket ownership with bucket owner
condition").

Keys carry the model version (the booster's digest), so a new model never overwrites the
object an endpoint was created from, and uploading the same model twice is a no-op.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from l2c.artifact import TARBALL_NAME
from l2c.cloud import tags
from l2c.cloud.session import CloudError, CloudSession

SHA256_METADATA = "sha256"
ACCOUNT_REGIONAL = "account-regional"
ACCOUNT_REGIONAL_SUFFIX = "-an"
# S3 offers the account regional namespace in its commercial and China partitions, all Regions
# but Middle East (Bahrain) and Middle East (UAE) (S3 User Guide, gpbucketnamespaces, and the
# announcement "Amazon S3 introduces account regional namespaces for general purpose buckets",
# 2026-03-16: 37 Regions, China's two included). GovCloud and the other partitions are not named
# there: the global name is kept for them (the stricter reading: a refused CreateBucket would
# stop the deploy).
REGIONAL_NAMESPACE_PARTITIONS = frozenset({"aws", "aws-cn"})
NO_REGIONAL_NAMESPACE = frozenset({"me-south-1", "me-central-1"})
# S3 User Guide, "General purpose bucket naming rules": 3-63 characters, lower-case letters,
# digits, dots and hyphens, starting and ending with a letter or digit, no "..", not an IP.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def offers_regional_namespace(session: CloudSession) -> bool:
    return session.partition in REGIONAL_NAMESPACE_PARTITIONS and session.region not in NO_REGIONAL_NAMESPACE


def regional_bucket_name(session: CloudSession) -> str:
    """l2c's name in the account regional namespace: only this account can ever create it."""
    return f"l2c-{session.account}-{session.region}{ACCOUNT_REGIONAL_SUFFIX}"


def global_bucket_name(session: CloudSession) -> str:
    """The name in the shared global namespace (Regions without the regional one, and earlier l2c's)."""
    return f"l2c-{session.account}-{session.region}"


def bucket_name(session: CloudSession) -> str:
    """The bucket this session's artifacts go to: the one the user named (--bucket), else l2c's.

    l2c's is the account regional one, unless only a bucket an earlier l2c made under the global
    name exists and is this account's: its stacks' artifacts stay where their endpoints read them."""
    if session.bucket:
        return session.bucket
    if not offers_regional_namespace(session):
        return global_bucket_name(session)
    regional = regional_bucket_name(session)
    if not bucket_exists_and_owned(session, regional) and bucket_exists_and_owned(session, global_bucket_name(session)):
        return global_bucket_name(session)
    return regional


def in_regional_namespace(session: CloudSession, bucket: str) -> bool:
    return bucket.endswith(f"-{session.account}-{session.region}{ACCOUNT_REGIONAL_SUFFIX}")


def check_bucket_name(name: str) -> str:
    """Refuse a --bucket S3 would refuse (before anything is created)."""
    if not BUCKET_NAME.match(name) or ".." in name or IP_ADDRESS.match(name):
        raise CloudError(
            f"--bucket {name!r} is not a valid S3 bucket name: 3 to 63 lower-case letters, digits, dots and "
            "hyphens, starting and ending with a letter or digit (S3 User Guide, bucket naming rules)"
        )
    return name


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


def _owner(session: CloudSession) -> dict:
    """The bucket owner condition every call on the bucket carries."""
    return {"ExpectedBucketOwner": session.account}


def bucket_exists_and_owned(session: CloudSession, bucket: str) -> bool:
    """Whether the bucket exists and is this account's (False when missing or someone else's)."""
    try:
        session.client("s3").head_bucket(Bucket=bucket, **_owner(session))
        return True
    except ClientError as err:
        if err.response["ResponseMetadata"]["HTTPStatusCode"] in (403, 404):
            return False
        raise


def bucket_exists(session: CloudSession, bucket: str) -> bool:
    try:
        session.client("s3").head_bucket(Bucket=bucket, **_owner(session))
        return True
    except ClientError as err:
        status = err.response["ResponseMetadata"]["HTTPStatusCode"]
        if status == 404:
            return False
        if status == 403:
            raise CloudError(
                f"bucket {bucket} exists but belongs to another account (or this account may not use it); "
                "l2c will not read or write it: pass --bucket NAME with a bucket of this account"
            ) from None
        raise


def is_l2cs(session: CloudSession, bucket: str) -> bool:
    """Whether l2c made this bucket (tagged shared): only such a bucket is hardened and deleted by l2c."""
    try:
        present = session.client("s3").get_bucket_tagging(Bucket=bucket, **_owner(session))["TagSet"]
    except ClientError as err:
        if err.response["Error"].get("Code") in ("NoSuchTagSet", "NoSuchBucket"):
            return False
        raise
    return tags.from_tag_list(present).get(tags.SHARED_TAG) == tags.shared_tags()[tags.SHARED_TAG]


def ensure_bucket(session: CloudSession, bucket: str) -> bool:
    """Create the bucket if needed and (re)apply its hardening; True when it was created.

    A bucket the user named that l2c did not create is used as it is: its policy, encryption
    and tags are the user's, and l2c never deletes it."""
    s3 = session.client("s3")
    created = not bucket_exists(session, bucket)
    if created:
        kwargs = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
        if session.region != "us-east-1":  # the one region that refuses a LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": session.region}
        if in_regional_namespace(session, bucket):
            kwargs["BucketNamespace"] = ACCOUNT_REGIONAL
        s3.create_bucket(**kwargs)
        s3.get_waiter("bucket_exists").wait(Bucket=bucket, **_owner(session))
    elif session.bucket == bucket and not is_l2cs(session, bucket):
        return False
    harden_bucket(session, bucket)
    return created


def harden_bucket(session: CloudSession, bucket: str) -> None:
    s3 = session.client("s3")
    owner = _owner(session)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
        **owner,
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
        **owner,
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket, session.partition)), **owner)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags.as_tag_list(tags.shared_tags())}, **owner)


def upload_artifact(session: CloudSession, bucket: str, key: str, tar_path: Path, sha256: str) -> bool:
    """Upload unless the same bytes are already there; True when something was written."""
    s3 = session.client("s3")
    try:
        existing = s3.head_object(Bucket=bucket, Key=key, **_owner(session))
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
        **_owner(session),
    )
    return True


def list_keys(session: CloudSession, bucket: str, prefix: str = "") -> list[str]:
    paginator = session.client("s3").get_paginator("list_objects_v2")
    try:
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, **_owner(session))
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
    answer = session.client("s3").get_bucket_versioning(Bucket=bucket, **_owner(session))
    return answer.get("Status") in {"Enabled", "Suspended"}


def _common_prefixes(keys: set[str]) -> set[str]:
    # One listing per stack folder rather than one per key.
    return {key.split("/", 1)[0] + "/" if "/" in key else key for key in keys}


def _versions(session: CloudSession, bucket: str, prefix: str) -> list[dict]:
    paginator = session.client("s3").get_paginator("list_object_versions")
    found = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, **_owner(session)):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            found.append({"Key": item["Key"], "VersionId": item["VersionId"]})
    return found


def _delete_objects(session: CloudSession, bucket: str, targets: list[dict]) -> None:
    s3 = session.client("s3")
    failed = []
    for start in range(0, len(targets), 1000):  # DeleteObjects takes at most 1000 keys
        batch = targets[start : start + 1000]
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}, **_owner(session))
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
    """Delete l2c's own bucket once no stack has an object in it; a user's bucket is never deleted."""
    if not bucket_exists_and_owned(session, bucket) or not is_l2cs(session, bucket) or list_keys(session, bucket):
        return False
    if versioning_ever_enabled(session, bucket):
        # Only versions and delete markers of deleted objects are left: they would make
        # DeleteBucket fail with BucketNotEmpty.
        _delete_objects(session, bucket, remaining_versions(session, bucket))
    session.client("s3").delete_bucket(Bucket=bucket, **_owner(session))
    return True
