"""The two roles of a stack: SageMaker's execution role and the Lambda function's role.

Both live under the path ``/l2c/`` so they can be listed without scanning the account, and
carry their permissions as inline policies rendered from the templates in ``src/l2c/iam/``: an inline
policy lives and dies with its role, so a half-deleted stack cannot leave an orphan policy.

IAM is global while everything else of a stack is regional, and each role's policy names its
region's bucket, endpoint and function. So a role is per stack AND region: its name carries the
region (``l2c-iris-eu-west-1-lambda``), it is tagged ``l2c:region``, and listing, updating or
deleting roles from one region never touches another region's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import unquote

from l2c.cloud import tags
from l2c.cloud.session import CloudError, CloudSession, get_if_present

NO_SUCH_ENTITY = {"NoSuchEntity"}

ROLE_PATH = "/l2c/"
REGION_TAG = "l2c:region"
MAX_ROLE_NAME = 64  # IAM's limit on a role name


@dataclass(frozen=True)
class RoleSpec:
    name: str
    description: str
    trust_policy: dict
    policy_name: str
    policy: dict


def role_name(stack: str, purpose: str, region: str) -> str:
    """``l2c-<stack>-<region>-<purpose>``; a region too long to fit IAM's 64 characters is
    replaced by a digest of it (no region today comes close: 32-character stack names fit)."""
    name = f"l2c-{stack}-{region}-{purpose}"
    if len(name) <= MAX_ROLE_NAME:
        return name
    return f"l2c-{stack}-{hashlib.sha256(region.encode()).hexdigest()[:8]}-{purpose}"


def region_tags(session: CloudSession) -> dict[str, str]:
    return {REGION_TAG: session.region}


def belongs_here(session: CloudSession, role_tags: dict[str, str]) -> bool:
    """Whether a role under /l2c/ is this region's (roles without the tag are no region's)."""
    return role_tags.get(REGION_TAG) == session.region


def ensure_role(session: CloudSession, spec: RoleSpec, wanted_tags: dict[str, str]) -> tuple[str, bool]:
    """Create or bring the role to the spec; returns its ARN and whether anything changed."""
    iam = session.client("iam")
    role = get_role(session, spec.name)
    changed = role is None
    wanted_tags = {**wanted_tags, **region_tags(session)}
    if role is not None:
        _refuse_other_regions(session, role)
    if role is None:
        role = iam.create_role(
            RoleName=spec.name,
            Path=ROLE_PATH,
            Description=spec.description,
            AssumeRolePolicyDocument=json.dumps(spec.trust_policy),
            Tags=tags.as_tag_list(wanted_tags),
        )["Role"]
    else:
        if _document(role["AssumeRolePolicyDocument"]) != spec.trust_policy:
            iam.update_assume_role_policy(RoleName=spec.name, PolicyDocument=json.dumps(spec.trust_policy))
            changed = True
        missing = tags.missing_tags(wanted_tags, tags.from_tag_list(role.get("Tags")))
        if missing:
            iam.tag_role(RoleName=spec.name, Tags=tags.as_tag_list(missing))
            changed = True
    if _inline_policy(session, spec.name, spec.policy_name) != spec.policy:
        iam.put_role_policy(RoleName=spec.name, PolicyName=spec.policy_name, PolicyDocument=json.dumps(spec.policy))
        changed = True
    return role["Arn"], changed


def get_role(session: CloudSession, name: str) -> dict | None:
    return get_if_present(lambda: session.client("iam").get_role(RoleName=name)["Role"], NO_SUCH_ENTITY)


def _refuse_other_regions(session: CloudSession, role: dict) -> None:
    region = tags.from_tag_list(role.get("Tags")).get(REGION_TAG)
    if region is not None and region != session.region:
        raise CloudError(
            f"IAM role {role['RoleName']} belongs to l2c's stack in {region}, not {session.region}; "
            f"l2c leaves it alone (manage it from {region})"
        )


def _inline_policy(session: CloudSession, role: str, policy_name: str) -> dict | None:
    document = get_if_present(
        lambda: session.client("iam").get_role_policy(RoleName=role, PolicyName=policy_name), NO_SUCH_ENTITY
    )
    return _document(document["PolicyDocument"]) if document else None


def _document(value) -> dict:
    # IAM returns policy documents URL-encoded; boto3 decodes some of them, not all.
    if isinstance(value, dict):
        return value
    return json.loads(unquote(value))


def delete_role(session: CloudSession, name: str) -> bool:
    """Delete the role with its inline and attached policies; False when it was not there."""
    iam = session.client("iam")
    role = get_role(session, name)
    if role is None:
        return False
    _refuse_other_regions(session, role)
    for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
    iam.delete_role(RoleName=name)
    return True


def list_roles(session: CloudSession) -> list[dict]:
    """This region's roles under l2c's path, each with its tags."""
    iam = session.client("iam")
    roles = []
    for page in iam.get_paginator("list_roles").paginate(PathPrefix=ROLE_PATH):
        for role in page["Roles"]:
            role_tags = tags.from_tag_list(iam.list_role_tags(RoleName=role["RoleName"])["Tags"])
            if belongs_here(session, role_tags):
                roles.append({"name": role["RoleName"], "arn": role["Arn"], "tags": role_tags})
    return roles


def list_local_policies(session: CloudSession) -> list[str]:
    """Customer-managed policies under l2c's path (l2c uses inline ones; anything here is stray)."""
    paginator = session.client("iam").get_paginator("list_policies")
    return [
        policy["PolicyName"]
        for page in paginator.paginate(Scope="Local", PathPrefix=ROLE_PATH)
        for policy in page["Policies"]
    ]
