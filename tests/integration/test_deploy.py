"""The deploy engine against the session's local cloud: both tutorial models, end to end.

The tests run in file order on one pair of deployments: first what a deploy creates, then the
API over HTTP, a redeploy, a new model version, the --public opt-out, and last destroy, checked
by listing every service without the engine's own inventory.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from aws_helpers import everything_l2c_left

from l2c import artifact, training
from l2c.cloud import apigateway, calling, functions, inventory, plan, stack, tags, teardown
from l2c.cloud.progress import Reporter
from l2c.cloud.sagemaker import Hosting
from l2c.cloud.session import CloudError
from l2c.datasets import load_built_in
from l2c.local.tutorial import TUTORIAL_BODIES

MODELS = ("iris", "house-price")


@pytest.fixture(scope="module")
def deployed(cloud_session, trained_models):
    deployments = {
        name: stack.deploy(name, trained_models[name], session=cloud_session, reporter=Reporter()) for name in MODELS
    }
    yield deployments
    teardown.destroy(everything=True, session=cloud_session, reporter=Reporter())


def post(deployment, body, key: str | None = "from-deployment", **kwargs) -> httpx.Response:
    headers = {}
    if key == "from-deployment":
        key = deployment.api_key
    if key is not None:
        headers["x-api-key"] = key
    return httpx.post(deployment.url, json=body, headers=headers, timeout=60, **kwargs)


def tutorial_rows(name: str) -> np.ndarray:
    return np.array([[float(value) for value in TUTORIAL_BODIES[name]["data"].split(",")]])


# --------------------------------------------------------------------------- what a deploy creates


def test_every_resource_of_a_stack_carries_its_tag(deployed, cloud_session):
    s3, sm, lam, iam = (cloud_session.client(name) for name in ("s3", "sagemaker", "lambda", "iam"))
    for name, deployment in deployed.items():
        bucket, key = deployment.model_data_url.removeprefix("s3://").split("/", 1)
        object_tags = tags.from_tag_list(s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"])
        assert object_tags == {"l2c:stack": name}
        endpoint = sm.describe_endpoint(EndpointName=deployment.endpoint)
        config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
        for arn in (endpoint["EndpointArn"], config["EndpointConfigArn"], model["ModelArn"]):
            assert tags.from_tag_list(sm.list_tags(ResourceArn=arn)["Tags"]).get("l2c:stack") == name, arn
        function = lam.get_function_configuration(FunctionName=deployment.function)
        assert lam.list_tags(Resource=function["FunctionArn"])["Tags"] == {"l2c:stack": name}
        for purpose in ("sagemaker", "lambda"):
            role_tags = tags.from_tag_list(iam.list_role_tags(RoleName=f"l2c-{name}-us-east-1-{purpose}")["Tags"])
            assert role_tags == {"l2c:stack": name, "l2c:region": "us-east-1"}


def test_the_bucket_is_hardened(deployed, cloud_session):
    s3 = cloud_session.client("s3")
    bucket = deployed["iris"].model_data_url.removeprefix("s3://").split("/", 1)[0]
    # In the account regional namespace: no other account can ever create this name.
    assert bucket == f"l2c-{cloud_session.account}-{cloud_session.region}-an"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        key: True for key in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    }
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    statement = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_artifact_key_names_the_model_version(deployed, trained_models):
    for name, deployment in deployed.items():
        card = json.loads((trained_models[name] / "model_card.json").read_text())
        assert deployment.model_data_url.endswith(f"/{name}/{card['booster_sha256'][:12]}/model.tar.gz")


def test_the_endpoint_runs_the_xgboost_image_of_the_region(deployed, cloud_session):
    sm = cloud_session.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName="l2c-iris")["EndpointConfigName"]
    )
    variant = config["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 1)
    image = sm.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]["Image"]
    assert image.endswith(".dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0")


def test_the_lambda_role_may_invoke_only_its_own_endpoint(deployed, cloud_session):
    iam = cloud_session.client("iam")
    document = iam.get_role_policy(RoleName="l2c-iris-us-east-1-lambda", PolicyName="l2c-invoke-endpoint")[
        "PolicyDocument"
    ]
    invoke = next(s for s in document["Statement"] if s["Action"] == "sagemaker:InvokeEndpoint")
    assert invoke["Resource"] == f"arn:aws:sagemaker:us-east-1:{cloud_session.account}:endpoint/l2c-iris"


def test_the_function_gets_its_settings_from_the_model_card(deployed, cloud_session, trained_models):
    lam = cloud_session.client("lambda")
    for name, deployment in deployed.items():
        card = json.loads((trained_models[name] / "model_card.json").read_text())
        config = lam.get_function_configuration(FunctionName=deployment.function)
        assert config["Runtime"] == "python3.13"
        variables = config["Environment"]["Variables"]
        assert variables["ENDPOINT_NAME"] == f"l2c-{name}"
        assert variables["FEATURE_NAMES"].split(",") == card["feature_names"]
        assert variables.get("CLASS_LABELS", "").split(",") == (card["class_labels"] or [""])


def test_api_gateway_invokes_the_function_from_exactly_one_method(deployed, cloud_session):
    for name, deployment in deployed.items():
        statements = functions.resource_policy(cloud_session, deployment.function)
        assert len(statements) == 1
        source = statements[0]["Condition"]["ArnLike"]["AWS:SourceArn"]
        path = apigateway.resource_path(name)
        assert source == f"arn:aws:execute-api:us-east-1:{cloud_session.account}:{deployment.api_id}/test/POST/{path}"


def test_the_api_has_the_tutorials_routes_behind_a_key_and_a_usage_plan(deployed, cloud_session):
    api_id = deployed["iris"].api_id
    assert deployed["house-price"].api_id == api_id
    assert apigateway.routed_paths(cloud_session, api_id) == ["/housepriceprediction", "/irisprediction"]
    for item in apigateway.resources(cloud_session, api_id):
        if item["path"] != "/":
            method = item["resourceMethods"]["POST"]
            assert method["apiKeyRequired"] is True
            assert method["methodIntegration"]["type"] == "AWS_PROXY"
    plan = apigateway.find_usage_plan(cloud_session)
    assert plan["apiStages"] == [{"apiId": api_id, "stage": "test"}]
    assert plan["throttle"] == {"rateLimit": 20.0, "burstLimit": 40} and plan["quota"]["limit"] == 10_000
    linked = cloud_session.client("apigateway").get_usage_plan_keys(usagePlanId=plan["id"])["items"]
    assert [key["value"] for key in linked] == [deployed["iris"].api_key]


def test_the_postman_environment_is_filled_outside_the_repository(deployed, local_cloud):
    path = deployed["iris"].postman_environment
    assert path.parent == Path(local_cloud.env["L2C_STATE_DIR"])
    values = {item["key"]: item["value"] for item in json.loads(path.read_text())["values"]}
    assert values == {"baseUrl": f"{local_cloud.api_url}/test", "apiKey": deployed["iris"].api_key}


# --------------------------------------------------------------------------- the API over HTTP


def test_the_tutorials_iris_body_gets_a_species(deployed, trained_models):
    response = post(deployed["iris"], TUTORIAL_BODIES["iris"])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["prediction"] == "setosa"
    expected = artifact.predict_like_container(artifact.load_artifact(trained_models["iris"]), tutorial_rows("iris"))[0]
    probabilities = answer["predictions"][0]["probabilities"]
    assert list(probabilities) == ["setosa", "versicolor", "virginica"]
    assert np.allclose(list(probabilities.values()), expected, atol=1e-6)


def test_the_tutorials_house_body_gets_the_models_price(deployed, trained_models):
    response = post(deployed["house-price"], TUTORIAL_BODIES["house-price"])
    assert response.status_code == 200, response.text
    model = artifact.load_artifact(trained_models["house-price"])
    expected = float(artifact.predict_like_container(model, tutorial_rows("house-price"))[0])
    assert response.json()["prediction"] == pytest.approx(expected, abs=1e-4)


def test_the_endpoint_answers_boto3_directly(deployed, cloud_session):
    answer = calling.invoke("iris", tutorial_rows("iris").tolist(), session=cloud_session)
    assert len(answer["predictions"][0]["score"]) == 3


def test_direct_invoke_refuses_a_row_the_container_would_silently_predict(deployed, cloud_session):
    short_row = tutorial_rows("iris")[:, :3].tolist()
    with pytest.raises(CloudError, match="row 1 has 3 values but the model expects 4"):
        calling.invoke("iris", short_row, session=cloud_session)


def test_no_key_or_a_wrong_key_is_forbidden(deployed):
    for key in (None, "not-the-key-0123456789"):
        response = post(deployed["iris"], TUTORIAL_BODIES["iris"], key=key)
        assert response.status_code == 403
        assert response.json() == {"message": "Forbidden"}


def test_an_unknown_route_is_answered_as_aws_does(deployed):
    response = httpx.post(deployed["iris"].url.replace("irisprediction", "nosuchmodel"), json={}, timeout=30)
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}


def test_a_callers_mistake_is_a_400_with_a_message(deployed):
    response = post(deployed["iris"], {"data": "5.1,3.5,1.4"})
    assert response.status_code == 400
    assert "4" in response.json()["message"]


# --------------------------------------------------------------------------- redeploy


def _snapshot(session) -> dict:
    api_id = apigateway.find_rest_api(session)["id"]
    plan = apigateway.find_usage_plan(session)
    return {
        "resources": sorted(str(r) for r in inventory.status(session).resources),
        "deployments": len(session.client("apigateway").get_deployments(restApiId=api_id)["items"]),
        "plan keys": len(session.client("apigateway").get_usage_plan_keys(usagePlanId=plan["id"])["items"]),
        "permissions": {name: len(functions.resource_policy(session, f"l2c-{name}")) for name in MODELS},
        "code": {name: functions.get_configuration(session, f"l2c-{name}")["CodeSha256"] for name in MODELS},
    }


def test_deploying_again_changes_nothing_and_duplicates_nothing(deployed, cloud_session, trained_models):
    before = _snapshot(cloud_session)
    for name in MODELS:
        again = stack.deploy(name, trained_models[name], session=cloud_session, reporter=Reporter())
        assert again.changes == [] and again.endpoint_change == "unchanged"
        assert again.url == deployed[name].url and again.api_key == deployed[name].api_key
    assert _snapshot(cloud_session) == before
    assert before["deployments"] == 1 and before["plan keys"] == 1


def test_a_new_model_version_moves_the_endpoint_and_removes_the_old_one(deployed, cloud_session, tmp_path):
    sm = cloud_session.client("sagemaker")
    old_config = sm.describe_endpoint(EndpointName="l2c-iris")["EndpointConfigName"]
    old_model = sm.describe_endpoint_config(EndpointConfigName=old_config)["ProductionVariants"][0]["ModelName"]
    retrained = training.train(load_built_in("iris"), params={"n_estimators": 3, "max_depth": 1})
    new_dir = training.save(retrained, tmp_path / "iris")

    moved = stack.deploy("iris", new_dir, session=cloud_session, reporter=Reporter())

    assert moved.endpoint_change in {"updated", "replaced"}
    assert moved.url == deployed["iris"].url
    new_config = sm.describe_endpoint(EndpointName="l2c-iris")["EndpointConfigName"]
    assert moved.model_version in new_config and new_config != old_config
    names = {(r.kind, r.name) for r in inventory.status(cloud_session).of("iris")}
    assert ("endpoint-config", old_config) not in names and ("model", old_model) not in names
    assert [r.name for r in inventory.status(cloud_session).of("iris") if r.kind == "object"] == [moved.model_data_url]
    expected = artifact.predict_like_container(artifact.load_artifact(new_dir), tutorial_rows("iris"))[0]
    served = post(deployed["iris"], TUTORIAL_BODIES["iris"]).json()["predictions"][0]["probabilities"]
    assert np.allclose(list(served.values()), expected, atol=1e-6)


def test_serverless_hosting_is_a_new_endpoint_configuration(deployed, cloud_session, trained_models):
    # SageMaker cannot update an instance endpoint to serverless: refused before anything changes.
    options = plan.DeployOptions(hosting=Hosting(serverless_memory_mb=2048, serverless_max_concurrency=3))
    before = sorted(str(r) for r in inventory.status(cloud_session).of("house-price"))
    with pytest.raises(
        CloudError, match="runs on instances; SageMaker cannot update it to serverless. Destroy the stack first"
    ):
        stack.deploy(
            "house-price", trained_models["house-price"], session=cloud_session, options=options, reporter=Reporter()
        )
    assert sorted(str(r) for r in inventory.status(cloud_session).of("house-price")) == before
    teardown.destroy("house-price", session=cloud_session, reporter=Reporter())
    moved = stack.deploy(
        "house-price", trained_models["house-price"], session=cloud_session, options=options, reporter=Reporter()
    )
    assert moved.endpoint_change == "created"
    sm = cloud_session.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName="l2c-house-price")["EndpointConfigName"]
    )
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 3}
    assert [r.kind for r in inventory.status(cloud_session).of("house-price")].count("endpoint-config") == 1
    assert post(deployed["house-price"], TUTORIAL_BODIES["house-price"]).status_code == 200
    teardown.destroy("house-price", session=cloud_session, reporter=Reporter())  # back on instances for what follows
    stack.deploy("house-price", trained_models["house-price"], session=cloud_session, reporter=Reporter())


def test_autoscaling_registers_the_variant_with_target_tracking(deployed, cloud_session, trained_models):
    options = plan.DeployOptions(autoscale=(1, 3))
    stack.deploy("iris", trained_models["iris"], session=cloud_session, options=options, reporter=Reporter())
    scaling = cloud_session.client("application-autoscaling")
    target = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"][0]
    assert target["ResourceId"] == "endpoint/l2c-iris/variant/AllTraffic"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    policy = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"][0]
    assert policy["PolicyType"] == "TargetTrackingScaling"


def test_public_is_an_explicit_opt_out_and_reversible(deployed, cloud_session, trained_models):
    public = plan.DeployOptions(public=True)
    opened = stack.deploy(
        "house-price", trained_models["house-price"], session=cloud_session, options=public, reporter=Reporter()
    )
    assert opened.api_key is None
    assert post(deployed["house-price"], TUTORIAL_BODIES["house-price"], key=None).status_code == 200
    assert post(deployed["iris"], TUTORIAL_BODIES["iris"], key=None).status_code == 403
    stack.deploy("house-price", trained_models["house-price"], session=cloud_session, reporter=Reporter())
    assert post(deployed["house-price"], TUTORIAL_BODIES["house-price"], key=None).status_code == 403


# --------------------------------------------------------------------------- destroy


def test_destroying_one_stack_leaves_the_other_serving(deployed, cloud_session):
    report = teardown.destroy("house-price", session=cloud_session, reporter=Reporter())
    assert report.stacks == ["house-price"]
    assert inventory.status(cloud_session).of("house-price") == []
    assert post(deployed["iris"], TUTORIAL_BODIES["iris"]).status_code == 200
    assert post(deployed["house-price"], TUTORIAL_BODIES["house-price"]).status_code == 403


def test_destroying_everything_leaves_nothing_in_any_service(deployed, cloud_session):
    assert everything_l2c_left(cloud_session), "the check must see the deployment it is about to remove"
    teardown.destroy(everything=True, session=cloud_session, reporter=Reporter())
    assert everything_l2c_left(cloud_session) == []
    assert post(deployed["iris"], TUTORIAL_BODIES["iris"]).status_code == 403
