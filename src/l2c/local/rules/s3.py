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
    "s3", "CreateBucket",
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
