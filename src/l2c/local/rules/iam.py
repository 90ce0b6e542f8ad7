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
import re

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
        created = created.replace(tzinfo=datetime.UTC)
    return (datetime.datetime.now(datetime.UTC) - created).total_seconds()


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


def trusts_service(role, service_principal: str, context: dict[str, str] | None = None) -> bool:
    """Whether the role's trust policy lets ``service_principal`` (e.g. sagemaker.amazonaws.com)
    assume it, for a request with these condition keys.

    ``context`` holds what the service puts in its AssumeRole request: ``aws:SourceAccount`` and
    ``aws:SourceArn``, the account and resource it acts for (IAM User Guide, "The confused deputy
    problem" and the global condition keys). A statement's Condition is judged against it, as
    IAM does: every operator must hold, a key the request lacks fails unless the operator ends
    in IfExists, and an operator this judge does not know fails (the stricter reading).
    """
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
        if (
            statement.get("Effect") == "Allow"
            and "sts:AssumeRole" in actions
            and (service_principal in services or "*" in services)
            and conditions_hold(statement.get("Condition") or {}, context or {})
        ):
            return True
    return False


# The operators a trust policy's confused-deputy conditions use (IAM User Guide, "IAM JSON policy
# elements: Condition operators"): String* compare case-sensitively, Arn* like StringLike.
_MATCHERS = {
    "StringEquals": lambda value, pattern: value == pattern,
    "StringNotEquals": lambda value, pattern: value != pattern,
    "StringEqualsIgnoreCase": lambda value, pattern: value.lower() == pattern.lower(),
    "StringLike": lambda value, pattern: _like(value, pattern),
    "ArnEquals": lambda value, pattern: value == pattern,
    "ArnLike": lambda value, pattern: _arn_like(value, pattern),
}


def conditions_hold(condition: dict, context: dict[str, str]) -> bool:
    keys = {key.lower(): value for key, value in context.items()}
    for operator, tests in condition.items():
        if_exists = operator.endswith("IfExists")
        matcher = _MATCHERS.get(operator.removesuffix("IfExists"))
        if matcher is None or not isinstance(tests, dict):
            return False
        for key, patterns in tests.items():
            value = keys.get(key.lower())
            if value is None:
                if if_exists:
                    continue
                return False
            patterns = [patterns] if isinstance(patterns, str) else list(patterns)
            negated = operator.startswith("StringNot")
            matched = [matcher(value, str(pattern)) for pattern in patterns]
            if not (all(matched) if negated else any(matched)):
                return False
    return True


def _arn_like(value: str, pattern: str) -> bool:
    # ArnLike compares each of the six colon-separated parts, wildcards within a part.
    values, patterns = value.split(":", 5), pattern.split(":", 5)
    return len(values) == len(patterns) == 6 and all(_like(part, wanted) for part, wanted in zip(values, patterns))


def _like(value: str, pattern: str) -> bool:
    # IAM's wildcards are * and ? only (no character classes, unlike fnmatch).
    regex = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def partition_of(region: str) -> str:
    from moto.utilities.utils import get_partition

    return get_partition(region)


def service_context(account: str, source_arn: str) -> dict[str, str]:
    """The condition keys a service's AssumeRole carries when it acts for ``source_arn``."""
    return {"aws:SourceAccount": account, "aws:SourceArn": source_arn}


# --------------------------------------------------------------------------- data-plane authorization


def assumed_role_of(access_key: str):
    """moto's STS session for a temporary access key (``ASIA...``), or None for the account's own keys."""
    from moto.iam.models import get_account_id_from
    from moto.sts.models import sts_backends

    return sts_backends[get_account_id_from(access_key)]["aws"].get_assumed_role_from_access_key(access_key)


def authorize(access_key: str, action: str, resource: str) -> dict:
    """Whether the caller behind ``access_key`` may do ``action`` on ``resource``.

    Keys of an assumed role (a Lambda function's, for instance) are judged by the role's own
    policies, as AWS judges an identity-based policy. Any other key is the account's own
    credentials, which the local cloud, like moto without authentication, lets do everything.
    """
    session = assumed_role_of(access_key) if access_key else None
    if session is None:
        return {"allowed": True, "principal": None}
    role_name = session.role_arn.rsplit("/", 1)[-1]
    principal = f"arn:aws:sts::{session.account_id}:assumed-role/{role_name}/{session.session_name}"
    role = find_role(session.account_id, session.role_arn)
    allowed = role is not None and role_allows(role, action, resource)
    return {"allowed": allowed, "principal": principal}


def authorize_admin(request):
    """``POST /_l2c/authorize {"access_key", "action", "resource"}`` -> ``{"allowed", "principal"}``."""
    from l2c.local.edge import json_reply

    try:
        document = request.json()
        access_key, action, resource = (str(document[name]) for name in ("access_key", "action", "resource"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return json_reply(400, {"message": 'send {"access_key": ..., "action": ..., "resource": ...}'})
    return json_reply(200, authorize(access_key, action, resource))


def register_admin(edge) -> None:
    edge.admin("POST", "authorize", authorize_admin)


# --------------------------------------------------------------------------- the policy simulator

import uuid  # noqa: E402

from l2c.local.rules import RULES, AwsError, Call, Reply  # noqa: E402  (rules are registered below)

IAM_XMLNS = "https://iam.amazonaws.com/doc/2010-05-08/"


def _members(params: dict, name: str) -> list[str]:
    """A query-protocol list (``ActionNames.member.1``, ``.2``, ...) in order."""
    prefix = f"{name}.member."
    numbered = [
        (int(key[len(prefix) :]), value)
        for key, value in params.items()
        if key.startswith(prefix) and key[len(prefix) :].isdigit()
    ]
    return [value for _, value in sorted(numbered)]


def _principal_policies(account: str, arn: str) -> list[str] | None:
    """The identity-based policy documents of a role or user ARN; None when IAM has no such principal."""
    role = find_role(account, arn)
    if role is not None:
        return role_policies(role)
    if ":user/" not in arn:
        return None
    backend = _backend(account, arn.split(":")[1])
    user = backend.users.get(arn.rsplit("/", 1)[-1])
    if user is None or user.arn != arn:
        return None
    documents = list(user.policies.values())
    for policy in user.managed_policies.values():
        documents.append(next(v for v in policy.versions if v.is_default).document)
    return [doc if isinstance(doc, str) else json.dumps(doc) for doc in documents]


def evaluate(documents: list[str], action: str, resource: str) -> str:
    """IAM's decision for identity-based policies: explicitDeny wins, then allowed, else implicitDeny."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    decision = "implicitDeny"
    for document in documents:
        result = IAMPolicy(document).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return "explicitDeny"
        if result == PermissionResult.PERMITTED:
            decision = "allowed"
    return decision


@RULES.before(
    "iam",
    "SimulatePrincipalPolicy",
    id="iam.simulate-principal-policy",
    source="IAM API Reference, SimulatePrincipalPolicy (EvaluationResults, EvalDecision allowed | explicitDeny | "
    "implicitDeny; NoSuchEntity for an unknown PolicySourceArn); IAM User Guide, policy evaluation logic",
    summary="Answered instead of moto (which lacks it): each action on each resource is judged by the role's or "
    "user's own inline and attached policies with moto's policy evaluation (an explicit Deny wins, no Allow "
    "is an implicit deny). Condition keys, permission boundaries and resource policies are not simulated.",
    test="tests/integration/test_deploy_lifecycle.py::test_a_given_role_that_cannot_read_the_artifact_is_refused_before_anything_is_created",
)
def simulate_principal_policy(call: Call):
    source = call.params.get("PolicySourceArn", "")
    documents = _principal_policies(call.account, source)
    if documents is None:
        raise AwsError("NoSuchEntity", f"The principal {source} cannot be found.", 404)
    actions = _members(call.params, "ActionNames")
    if not actions:
        raise AwsError(
            "ValidationError",
            "1 validation error detected: Value null at 'actionNames' failed to satisfy "
            "constraint: Member must not be null",
        )
    results = ""
    for action in actions:
        for resource in _members(call.params, "ResourceArns") or ["*"]:
            results += (
                f"<member><EvalActionName>{_xml(action)}</EvalActionName><EvalResourceName>{_xml(resource)}"
                f"</EvalResourceName><EvalDecision>{evaluate(documents, action, resource)}</EvalDecision>"
                "<MatchedStatements/><MissingContextValues/></member>"
            )
    body = (
        f'<SimulatePrincipalPolicyResponse xmlns="{IAM_XMLNS}"><SimulatePrincipalPolicyResult>'
        f"<IsTruncated>false</IsTruncated><EvaluationResults>{results}</EvaluationResults>"
        "</SimulatePrincipalPolicyResult><ResponseMetadata><RequestId>"
        f"{uuid.uuid4()}</RequestId></ResponseMetadata></SimulatePrincipalPolicyResponse>"
    ).encode()
    return Reply(200, [("Content-Type", "text/xml")], body)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
