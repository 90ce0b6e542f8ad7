"""The src/l2c/iam/ templates: rendered, linted with parliament, and held to least privilege."""

import json
from types import SimpleNamespace

import parliament
import pytest

from l2c.cloud import container, policies, roles, sagemaker

VALUES = {
    "Partition": "aws",
    "Region": "us-east-1",
    "Account": "123456789012",
    "EndpointName": "L2C-Iris-Endpoint",
    "FunctionName": "l2c-iris-predict",
    "BucketName": "l2c-models-123456789012",
    "ModelPrefix": "models/iris/",
    "ImageAccount": "683313688378",
}
TEMPLATES = [
    "lambda-trust-policy",
    "lambda-invoke-endpoint-policy",
    "sagemaker-trust-policy",
    "sagemaker-execution-policy",
]
# Statements that AWS only allows on every resource.
STAR_ONLY_ACTIONS = {"ecr:GetAuthorizationToken"}


def statements(policy):
    found = policy["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value):
    return value if isinstance(value, list) else [value]


def lint(policy):
    """parliament's findings (community auditors included), less the known false positives."""
    findings = parliament.analyze_policy_string(json.dumps(policy), include_community_auditors=True).findings
    kept = []
    for finding in findings:
        # parliament lints identity policies; a role's trust policy has a Principal and, by
        # IAM's grammar, no Resource, which it reports as malformed.
        if finding.issue == "MALFORMED" and "neither Resource nor NotResource" in finding.detail and _is_trust(policy):
            continue
        # The community CREDENTIALS_EXPOSURE auditor flags ecr:GetAuthorizationToken; SageMaker
        # needs that token to pull the image, and the action has no narrower form.
        if finding.issue == "CREDENTIALS_EXPOSURE" and finding.location.get("actions") == ["ecr:getauthorizationtoken"]:
            continue
        kept.append((finding.issue, finding.detail, finding.location))
    return kept


def _is_trust(policy):
    return all("Principal" in stmt and stmt["Action"] == "sts:AssumeRole" for stmt in statements(policy))


def test_every_template_is_listed():
    assert policies.template_names() == sorted(TEMPLATES)


@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_renders_and_lints_clean(name):
    policy = policies.render_policy(name, **VALUES)
    assert policy["Version"] == "2012-10-17"
    assert "${" not in json.dumps(policy)
    assert lint(policy) == []


def test_the_linter_does_catch_a_bad_policy():
    wrong = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sagemaker:InvokeEndpont", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x",
            },
        ],
    }
    issues = {issue for issue, _, _ in lint(wrong)}
    assert {"UNKNOWN_ACTION", "RESOURCE_MISMATCH"} <= issues
    leaky = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "iam:CreateAccessKey"], "Resource": "*"}
        ],
    }
    assert "CREDENTIALS_EXPOSURE" in {issue for issue, _, _ in lint(leaky)}, "the ECR exception must stay narrow"


@pytest.mark.parametrize("name", TEMPLATES)
def test_only_the_registry_login_is_granted_on_every_resource(name):
    for stmt in statements(policies.render_policy(name, **VALUES)):
        assert stmt["Effect"] == "Allow"
        assert "NotAction" not in stmt and "NotResource" not in stmt
        resources = as_list(stmt.get("Resource", []))
        if "*" in resources:
            assert set(as_list(stmt["Action"])) <= STAR_ONLY_ACTIONS, stmt
        for action in as_list(stmt["Action"]):
            assert "*" not in action, stmt


def test_the_lambda_may_invoke_exactly_its_endpoint_by_its_lower_case_arn():
    policy = policies.render_policy("lambda-invoke-endpoint-policy", **VALUES)
    invoke = [stmt for stmt in statements(policy) if stmt["Action"] == "sagemaker:InvokeEndpoint"]
    assert [stmt["Resource"] for stmt in invoke] == [
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint/l2c-iris-endpoint"
    ]


def test_the_lambda_writes_only_its_own_log_group():
    policy = policies.render_policy("lambda-invoke-endpoint-policy", **VALUES)
    log_resources = {
        resource
        for stmt in statements(policy)
        if any(action.startswith("logs:") for action in as_list(stmt["Action"]))
        for resource in as_list(stmt["Resource"])
    }
    assert log_resources == {"arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/l2c-iris-predict:*"}


def test_sagemaker_reads_only_the_model_prefix_and_logs_keep_the_endpoint_case():
    policy = policies.render_policy("sagemaker-execution-policy", **VALUES)
    by_sid = {stmt["Sid"]: stmt for stmt in statements(policy)}
    assert by_sid["ReadTheModelArtifact"]["Resource"] == "arn:aws:s3:::l2c-models-123456789012/models/iris/*"
    listing = by_sid["ListOnlyTheModelPrefix"]
    assert listing["Resource"] == "arn:aws:s3:::l2c-models-123456789012"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["models/iris/*"]}}
    assert (
        by_sid["PullTheXGBoostImage"]["Resource"] == "arn:aws:ecr:us-east-1:683313688378:repository/sagemaker-xgboost"
    )
    # CloudWatch keeps the endpoint name as given, unlike SageMaker's own ARNs
    assert by_sid["WriteTheEndpointLogs"]["Resource"].endswith("log-group:/aws/sagemaker/Endpoints/L2C-Iris-Endpoint:*")


@pytest.mark.parametrize("name", ["lambda-trust-policy", "sagemaker-trust-policy"])
def test_trust_policies_name_one_service(name):
    (stmt,) = statements(policies.render_policy(name, **VALUES))
    expected = "lambda.amazonaws.com" if name.startswith("lambda") else "sagemaker.amazonaws.com"
    assert stmt["Principal"] == {"Service": expected}
    assert stmt["Action"] == "sts:AssumeRole"


@pytest.mark.parametrize("name", ["lambda-trust-policy", "sagemaker-trust-policy"])
def test_trust_policies_hold_the_service_to_this_account(name):
    # Confused deputy: without a condition, the service would assume the role for a resource of
    # any account that names its ARN.
    (stmt,) = statements(policies.render_policy(name, **VALUES))
    assert stmt["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}


def test_sagemaker_assumes_its_role_only_for_this_accounts_resources_in_this_region():
    # SageMaker's own example for inference: a region-and-account ARN pattern, not one model's
    # (SageMaker Developer Guide, security-confused-deputy-prevention, "SageMaker AI Inference").
    (stmt,) = statements(policies.render_policy("sagemaker-trust-policy", **VALUES))
    assert stmt["Condition"]["ArnLike"] == {"aws:SourceArn": "arn:aws:sagemaker:us-east-1:123456789012:*"}


def test_a_missing_value_is_named():
    values = dict(VALUES)
    del values["EndpointName"], values["Account"]
    with pytest.raises(policies.PolicyTemplateError, match="needs values for: Account, EndpointName"):
        policies.render_policy("lambda-invoke-endpoint-policy", **values)


@pytest.mark.parametrize("bad", ["*", "l2c-*", "a?c", "", "two words", 'x"y', "${Account}"])
def test_a_value_that_would_widen_the_policy_is_refused(bad):
    with pytest.raises(policies.PolicyTemplateError, match="EndpointName"):
        policies.render_policy("lambda-invoke-endpoint-policy", **{**VALUES, "EndpointName": bad})


def test_an_unknown_template_is_refused_with_the_known_ones():
    with pytest.raises(policies.PolicyTemplateError, match="lambda-trust-policy"):
        policies.render_policy("admin-policy", **VALUES)


def test_the_partition_is_given_never_guessed_from_the_region():
    # A guess from the region's prefix named the European Sovereign Cloud "aws"; the caller
    # passes the session's partition instead.
    values = {key: value for key, value in VALUES.items() if key != "Partition"}
    with pytest.raises(policies.PolicyTemplateError, match="needs values for: Partition"):
        policies.render_policy("lambda-invoke-endpoint-policy", **{**values, "Region": "eusc-de-east-1"})
    policy = policies.render_policy("lambda-invoke-endpoint-policy", **{**VALUES, "Partition": "aws-eusc"})
    assert all(stmt["Resource"].startswith("arn:aws-eusc:") for stmt in statements(policy))


def test_the_role_documents_iam_is_sent_are_the_rendered_templates():
    # iam.ensure_role sends json.dumps of the spec's documents (create_role, put_role_policy).
    session = SimpleNamespace(partition="aws", region="us-east-1", account="123456789012")
    spec = roles.sagemaker_role_spec(session, "iris", "l2c-models-123456789012")
    values = {
        **VALUES,
        "BucketName": "l2c-models-123456789012",
        "ModelPrefix": "iris/",
        "ImageAccount": policies.image_account(container.image_uri("us-east-1")),
        "EndpointName": sagemaker.endpoint_name("iris"),
    }
    for template, document in (
        ("sagemaker-trust-policy", spec.trust_policy),
        ("sagemaker-execution-policy", spec.policy),
    ):
        assert json.loads(json.dumps(document)) == policies.render_policy(template, **values)


def test_image_account_comes_from_the_image_uri():
    uri = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0"
    assert policies.image_account(uri) == "683313688378"
    with pytest.raises(policies.PolicyTemplateError):
        policies.image_account("sagemaker-xgboost:3.2-0")


def test_iam_variables_are_not_taken_for_placeholders():
    assert policies._substitute("arn:aws:iam::${Account}:user/${aws:username}", {"Account": "123456789012"}) == (
        "arn:aws:iam::123456789012:user/${aws:username}"
    )
