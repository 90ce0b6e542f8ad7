"""The tags that mark what l2c created, so status and destroy find it again and nothing else.

A resource that belongs to one deployed model carries ``l2c:stack=<name>``. The few resources
every model shares in an account and region (the artifact bucket, the REST API with its stage,
API key and usage plan) carry ``l2c:shared=true`` instead: they go away with the last stack.
"""

from __future__ import annotations

STACK_TAG = "l2c:stack"
SHARED_TAG = "l2c:shared"
TAG_PREFIX = "l2c:"


def stack_tags(stack: str) -> dict[str, str]:
    return {STACK_TAG: stack}


def shared_tags() -> dict[str, str]:
    return {SHARED_TAG: "true"}


def as_tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """The ``[{"Key": ..., "Value": ...}]`` form of S3, IAM and SageMaker."""
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def from_tag_list(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {item["Key"]: item["Value"] for item in items or []}


def is_l2c(tags: dict[str, str] | None) -> bool:
    return any(key.startswith(TAG_PREFIX) for key in tags or {})


def stack_of(tags: dict[str, str] | None) -> str | None:
    """The stack a resource belongs to; ``None`` for shared or foreign resources."""
    return (tags or {}).get(STACK_TAG)


def missing_tags(wanted: dict[str, str], present: dict[str, str] | None) -> dict[str, str]:
    present = present or {}
    return {key: value for key, value in wanted.items() if present.get(key) != value}
