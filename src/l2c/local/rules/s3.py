"""S3 as AWS runs it: one namespace of bucket names for every account.

Bucket names are global: a name another account owns cannot be created by anyone else until
that account deletes the bucket (S3 User Guide, "Bucket naming rules" and "Bucket quotas,
restrictions, and limitations"). CreateBucket then answers ``409 BucketAlreadyExists``; a name
you already own answers ``409 BucketAlreadyOwnedByYou``, except in us-east-1, where S3 keeps
its legacy answer, ``200 OK`` (botocore s3 model, the BucketAlreadyOwnedByYou error's
documentation). moto 5.2 keeps one list of names across its accounts and answers the same;
the rule states the behaviour where the local cloud's other rules are, and does not depend
on moto's store to keep doing it.

The edge reads a request's body only when a rule runs for its operation, and this module's
only operation is CreateBucket (``PUT /{Bucket}``, no query): object uploads still stream to moto.
"""

from __future__ import annotations

from types import SimpleNamespace

from l2c.local.rules import RULES, AwsError, Call

LEGACY_REGION = "us-east-1"
NAME_TAKEN = (
    "The requested bucket name is not available. The bucket namespace is shared by all users of the system. "
    "Please select a different name and try again."
)
ALREADY_YOURS = "Your previous request to create the named bucket succeeded and you already own it."


def bucket_owner(name: str) -> str | None:
    """The account that owns bucket ``name`` in any account of the local cloud, or None."""
    from moto.s3.models import s3_backends

    owner = s3_backends.bucket_accounts.get(name)
    return owner[1] if owner else None


def bucket_region(account: str, name: str) -> str:
    from moto.s3.models import s3_backends

    for partition in s3_backends[account].values():
        bucket = partition.buckets.get(name)
        if bucket is not None:
            return bucket.region_name
    return LEGACY_REGION


def addressed_by_host(call: Call) -> bool:
    """Whether the bucket is in the Host name (virtual-hosted style), decided as moto's S3 decides."""
    from moto.s3.responses import S3Response

    host = call.headers.get("host", "")
    return S3Response.subdomain_based_buckets(SimpleNamespace(headers={"host": host}, url=f"http://{host}/"))


@RULES.before(
    "s3",
    "CreateBucket",
    id="s3.bucket-names-global",
    source="S3 User Guide: Bucket naming rules; Bucket quotas, restrictions, and limitations; "
    "botocore s3 model, errors BucketAlreadyExists and BucketAlreadyOwnedByYou",
    summary="A bucket name is unique across all accounts: CreateBucket of a name another account owns is refused "
    "with 409 BucketAlreadyExists; of a name you own, 409 BucketAlreadyOwnedByYou, except in us-east-1, "
    "where S3 answers 200 OK as it always has. Deleting the bucket frees the name for anyone.",
    test="tests/integration/test_rules_s3.py::test_a_bucket_name_another_account_owns_is_refused",
)
def bucket_names_are_global(call: Call) -> None:
    name = call.params.get("Bucket", "")
    # CreateBucket carries no query; a virtual-hosted request puts an object key where a
    # path-style one puts the bucket. Neither is a CreateBucket.
    if set(call.params) != {"Bucket"} or addressed_by_host(call):
        return None
    owner = bucket_owner(name)
    if owner is None:
        return None
    if owner != call.account:
        raise AwsError("BucketAlreadyExists", NAME_TAKEN, 409, BucketName=name)
    if not (call.region == LEGACY_REGION and bucket_region(owner, name) == LEGACY_REGION):
        raise AwsError("BucketAlreadyOwnedByYou", ALREADY_YOURS, 409, BucketName=name)
    return None


# --------------------------------------------------------------------------- bucket owner condition

EXPECTED_OWNER_HEADER = "x-amz-expected-bucket-owner"
# The bucket and object calls l2c makes, and their read-back counterparts (botocore's s3 model
# gives each an ExpectedBucketOwner member, sent as this header).
OWNER_CONDITION_OPERATIONS = (
    "HeadBucket",
    "DeleteBucket",
    "ListObjectsV2",
    "ListObjectVersions",
    "HeadObject",
    "GetObject",
    "PutObject",
    "CopyObject",
    "DeleteObject",
    "DeleteObjects",
    "GetObjectTagging",
    "PutPublicAccessBlock",
    "GetPublicAccessBlock",
    "PutBucketEncryption",
    "GetBucketEncryption",
    "PutBucketPolicy",
    "GetBucketPolicy",
    "PutBucketTagging",
    "GetBucketTagging",
    "PutBucketVersioning",
    "GetBucketVersioning",
)


def addressed_bucket(call: Call) -> str:
    """The bucket a call names: the Host's first label (virtual-hosted style) or the path's first part."""
    if addressed_by_host(call):
        return call.headers.get("host", "").split(".", 1)[0]
    return call.params.get("Bucket", "")


@RULES.before(
    "s3",
    *OWNER_CONDITION_OPERATIONS,
    id="s3.expected-bucket-owner",
    source="S3 User Guide, 'Verifying bucket ownership with bucket owner condition'; botocore s3 model, "
    "ExpectedBucketOwner (x-amz-expected-bucket-owner): 'If the account ID that you provide does not match the "
    "actual owner of the bucket, the request fails with the HTTP status code 403 Forbidden (access denied)'",
    summary="A call carrying ExpectedBucketOwner (the x-amz-expected-bucket-owner header) on a bucket another "
    "account owns is refused with 403 AccessDenied 'Access Denied', before anything is read or written; moto "
    "ignores the header. The body is not read: uploads still stream.",
    test="tests/integration/test_deploy_safety.py::test_a_bucket_of_another_account_is_refused_by_the_owner_condition",
    reads_body=False,
)
def bucket_owner_condition(call: Call) -> None:
    expected = call.headers.get(EXPECTED_OWNER_HEADER)
    if not expected:
        return None
    owner = bucket_owner(addressed_bucket(call))
    if owner is not None and owner != expected.strip():
        raise AwsError("AccessDenied", "Access Denied", 403)
    return None
