"""IAM as the other services see it: roles that are not usable yet, and what a role may do.

Two AWS behaviours other rules build on:

- IAM is eventually consistent: a role created a few seconds ago cannot be assumed yet by
  SageMaker or Lambda (source: AWS IAM User Guide, "Troubleshoot IAM: changes I make are not
  always immediately visible"; reports of 10-60 s in hashicorp/terraform-provider-aws#6566 and
  DataDog/stratus-red-team#358). :func:`is_propagated` is that delay, scaled by the pace.
- A role's permissions decide what the data-plane hops it runs may do (an endpoint reading its
  artifact, a Lambda function calling InvokeEndpoint). :func:`role_allows` evaluates the role's
  inline and attached policies with moto's own policy evaluation (an explicit Deny wins; no
  Allow means denied), as AWS's policy evaluation logic does for an identity-based policy.

moto's IAM is global (one store per account and partition), as AWS's is.
"""

from __future__ import annotations

import datetime
import json

from l2c.local.pace import PACE

# How long AWS takes, typically, before a new role can be assumed by a service (seconds).
ROLE_PROPAGATION_AWS_S = 10.0


def _backend(account: str, partition: str = "aws"):
    from moto.iam.models import iam_backends

    return iam_backends[account][partition]


def find_role(account: str, role_arn: str):
    """moto's role object for an ARN, or None."""
    partition = role_arn.split(":")[1] if role_arn.count(":") >= 5 else "aws"
    try:
        return _backend(account, partition).get_role_by_arn(role_arn)
    except Exception:  # moto raises its IAMNotFoundException; any failure means "no such role"
        return None


def role_age_seconds(role) -> float:
    created = role.create_date
    if created.tzinfo is None:
        created = created.replace(tzinfo=datetime.timezone.utc)
    return (datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()


def is_propagated(role) -> bool:
    """Whether a service could assume this role by now (AWS: seconds after CreateRole)."""
    return role_age_seconds(role) >= PACE.seconds(ROLE_PROPAGATION_AWS_S)


def role_policies(role) -> list[str]:
    """The role's inline and attached policy documents, as JSON strings."""
    backend = _backend(role.account_id, role.partition)
    documents = [backend.get_role_policy(role.name, name)[1] for name in backend.list_role_policies(role.name)]
    attached, _ = backend.list_attached_role_policies(role.name)
    for policy in attached:
        version = next(v for v in policy.versions if v.is_default)
        documents.append(version.document)
    return [doc if isinstance(doc, str) else json.dumps(doc) for doc in documents]


def role_allows(role, action: str, resource: str) -> bool:
    """Whether the role's own policies allow ``action`` on ``resource`` (explicit Deny wins)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    allowed = False
    for document in role_policies(role):
        result = IAMPolicy(document).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return False
        allowed = allowed or result == PermissionResult.PERMITTED
    return allowed


def trusts_service(role, service_principal: str) -> bool:
    """Whether the role's trust policy lets ``service_principal`` (e.g. sagemaker.amazonaws.com) assume it."""
    document = role.assume_role_policy_document
    policy = json.loads(document) if isinstance(document, str) else document
    statements = policy.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else [principal]
        services = [services] if isinstance(services, str) else services
        if statement.get("Effect") == "Allow" and "sts:AssumeRole" in actions and (
            service_principal in services or "*" in services
        ):
            return True
    return False
