"""Deploy and destroy through what SageMaker really does, under the local cloud's AWS rules.

An endpoint is Creating for minutes, refuses DeleteEndpoint and UpdateEndpoint meanwhile, goes
Failed when its instances cannot load the artifact, rolls an update back to the old
configuration, and CreateEndpoint is refused beyond the account's instance quota. Every test
ends with `destroy` leaving nothing of its stack in any service, listed without the engine's
own inventory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from l2c.cloud import apigateway, calling, inventory, plan, sagemaker, stack, teardown
from l2c.cloud.progress import Reporter
from l2c.cloud.sagemaker import Hosting
from l2c.cloud.session import CloudError
from l2c.local.tutorial import TUTORIAL_BODIES

NAME = "iris-life"
ENDPOINT = sagemaker.endpoint_name(NAME)
# Slow enough to find the endpoint still Creating after an interrupted deploy, even on a busy
# machine (~9 s of AWS's 5 min).
WATCHABLE_PACE = 0.03


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, as the deploy's wait meets it."""


def interrupt(*args, **kwargs):
    raise Interrupted()


@pytest.fixture
def watchable(paced):
    """The cloud slowed to WATCHABLE_PACE (and the session's polling with it)."""
    paced(WATCHABLE_PACE)


@pytest.fixture
def clean(cloud_session):
    yield
    teardown.destroy(NAME, session=cloud_session, reporter=Reporter())


def deploy(session, model_dir, **options):
    return stack.deploy(NAME, model_dir, session=session, options=plan.DeployOptions(**options), reporter=Reporter())


def left_of(session, name: str = NAME) -> list[str]:
    """Everything named for the stack, listed service by service (not through l2c's inventory)."""
    prefix = f"l2c-{name}"
    sm, lam, logs, iam, s3 = (session.client(n) for n in ("sagemaker", "lambda", "logs", "iam", "s3"))
    left = [f"endpoint {e['EndpointName']}" for e in sm.list_endpoints()["Endpoints"] if e["EndpointName"] == prefix]
    left += [
        f"config {c['EndpointConfigName']}"
        for c in sm.list_endpoint_configs()["EndpointConfigs"]
        if c["EndpointConfigName"].startswith(prefix + "-")
    ]
    left += [f"model {m['ModelName']}" for m in sm.list_models()["Models"] if m["ModelName"].startswith(prefix + "-")]
    left += [f"function {f['FunctionName']}" for f in lam.list_functions()["Functions"] if f["FunctionName"] == prefix]
    left += [
        f"log group {g['logGroupName']}"
        for g in logs.describe_log_groups()["logGroups"]
        if g["logGroupName"].endswith("/" + prefix)
    ]
    left += [f"role {r['RoleName']}" for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(prefix + "-")]
    for bucket in s3.list_buckets()["Buckets"]:
        if bucket["Name"].startswith("l2c-"):
            objects = s3.list_objects_v2(Bucket=bucket["Name"], Prefix=f"{name}/").get("Contents", [])
            left += [f"object {o['Key']}" for o in objects]
    api = apigateway.find_rest_api(session)
    if api is not None and f"/{apigateway.resource_path(name)}" in apigateway.routed_paths(session, api["id"]):
        left.append(f"route /{apigateway.resource_path(name)}")
    return left


def endpoint_status(session) -> str | None:
    description = sagemaker.describe_endpoint(session, ENDPOINT)
    return description["EndpointStatus"] if description else None


def corrupt_version(model_dir, tmp_path, monkeypatch):
    """A copy of the model folder whose tarball the container cannot load, under a new version.

    `l2c check` would refuse it before S3; that check is switched off so that SageMaker's own
    refusal is what the deploy meets (a tarball damaged in transit, a container that changed)."""
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    card_path = broken / "model_card.json"
    card = json.loads(card_path.read_text())
    card["booster_sha256"] = "f" * 64
    card_path.write_text(json.dumps(card))
    (broken / "model.tar.gz").write_bytes(b"this is not a gzip file")
    monkeypatch.setattr(stack.checks, "check_model_dir", lambda path: None)
    return broken


def answers(session) -> int:
    """The API's status for the tutorial's body (a new key takes seconds to work: call_api waits for it)."""
    status, _ = calling.call_api(NAME, TUTORIAL_BODIES["iris"], session=session)
    return status


# --------------------------------------------------------------------------- an endpoint left Creating


def test_destroy_waits_out_an_endpoint_left_creating_by_an_interrupted_deploy(
    cloud_session, trained_models, monkeypatch, watchable
):
    monkeypatch.setattr(sagemaker, "wait_in_service", interrupt)
    with pytest.raises(Interrupted):
        deploy(cloud_session, trained_models["iris"])
    monkeypatch.undo()
    assert endpoint_status(cloud_session) == "Creating"
    said = Reporter()

    report = teardown.destroy(NAME, session=cloud_session, reporter=said)

    assert f"endpoint {ENDPOINT} is Creating: waiting for SageMaker to finish" in said.lines
    assert f"endpoint {ENDPOINT}" in report.deleted
    assert left_of(cloud_session) == []


def test_a_deploy_interrupted_while_creating_is_finished_by_the_next(
    cloud_session, trained_models, monkeypatch, watchable, clean
):
    monkeypatch.setattr(sagemaker, "wait_in_service", interrupt)
    with pytest.raises(Interrupted):
        deploy(cloud_session, trained_models["iris"])
    monkeypatch.undo()
    assert endpoint_status(cloud_session) == "Creating"
    said = Reporter()

    deployment = stack.deploy(NAME, trained_models["iris"], session=cloud_session, reporter=said)

    assert f"endpoint {ENDPOINT} is Creating: waiting for SageMaker to finish" in said.lines
    assert deployment.endpoint_change == "unchanged"  # waited for, not created twice
    assert answers(cloud_session) == 200


def test_destroy_deletes_the_endpoint_first_so_a_failure_leaves_a_stack_a_rerun_finishes(
    cloud_session, trained_models, monkeypatch
):
    deploy(cloud_session, trained_models["iris"])
    monkeypatch.setattr(sagemaker, "delete_endpoint", interrupt)
    with pytest.raises(Interrupted):
        teardown.destroy(NAME, session=cloud_session, reporter=Reporter())
    monkeypatch.undo()
    left = left_of(cloud_session)
    assert f"function {ENDPOINT}" in left and f"route /{apigateway.resource_path(NAME)}" in left
    assert answers(cloud_session) == 200  # the API still serves: nothing it needs is gone

    teardown.destroy(NAME, session=cloud_session, reporter=Reporter())

    assert left_of(cloud_session) == []


# --------------------------------------------------------------------------- Failed, and rolled back


def test_an_endpoint_that_failed_to_start_is_destroyed(cloud_session, trained_models, tmp_path, monkeypatch):
    broken = corrupt_version(trained_models["iris"], tmp_path, monkeypatch)
    with pytest.raises(sagemaker.EndpointFailed, match="did not pass the ping health check"):
        deploy(cloud_session, broken)
    assert endpoint_status(cloud_session) == "Failed"

    teardown.destroy(NAME, session=cloud_session, reporter=Reporter())

    assert left_of(cloud_session) == []


def test_a_rolled_back_update_keeps_everything_the_endpoint_runs_on(
    cloud_session, trained_models, tmp_path, monkeypatch, clean
):
    good = deploy(cloud_session, trained_models["iris"])
    sm = cloud_session.client("sagemaker")
    old_config = sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    old_model = sm.describe_endpoint_config(EndpointConfigName=old_config)["ProductionVariants"][0]["ModelName"]
    broken = corrupt_version(trained_models["iris"], tmp_path, monkeypatch)

    with pytest.raises(sagemaker.UpdateRolledBack) as failure:
        deploy(cloud_session, broken)

    assert "did not pass the ping health check" in str(failure.value) and old_config in str(failure.value)
    live = sm.describe_endpoint(EndpointName=ENDPOINT)
    assert (live["EndpointStatus"], live["EndpointConfigName"]) == ("InService", old_config)
    kept = left_of(cloud_session)
    assert f"config {old_config}" in kept and f"model {old_model}" in kept
    assert f"object {good.model_data_url.split('/', 3)[3]}" in kept
    assert answers(cloud_session) == 200
    endpoint = next(r for r in inventory.status(cloud_session).of(NAME) if r.kind == "endpoint")
    assert f"config {old_config}, last update failed: " in endpoint.detail  # status shows it too

    monkeypatch.undo()
    again = deploy(cloud_session, trained_models["iris"])  # the good version again: nothing to update
    assert again.endpoint_change == "unchanged"
    assert [
        item for item in left_of(cloud_session) if "ffffffffffff" in item
    ] == []  # the failed version's leftovers went


def test_destroy_straight_after_a_rolled_back_update_leaves_nothing(
    cloud_session, trained_models, tmp_path, monkeypatch
):
    deploy(cloud_session, trained_models["iris"])
    broken = corrupt_version(trained_models["iris"], tmp_path, monkeypatch)
    with pytest.raises(sagemaker.UpdateRolledBack):
        deploy(cloud_session, broken)
    left = left_of(cloud_session)
    # Both versions are there: the one the endpoint runs on, and the failed one's config and model.
    assert [item for item in left if item.startswith(("config", "model")) and "ffffffffffff" in item]
    assert len([item for item in left if item.startswith("config ")]) == 2

    teardown.destroy(NAME, session=cloud_session, reporter=Reporter())

    assert left_of(cloud_session) == []


# --------------------------------------------------------------------------- refused before anything is created


@pytest.fixture
def quota(local_cloud):
    url = local_cloud.env["AWS_ENDPOINT_URL"] + "/_l2c/quotas"

    def set_quota(values: dict) -> None:
        httpx.post(url, json=values, timeout=30).raise_for_status()

    yield set_quota
    set_quota({"ml.m5.large": None})


def test_a_zero_instance_quota_is_refused_before_anything_is_created(cloud_session, trained_models, quota):
    quota({"ml.m5.large": 0})

    with pytest.raises(sagemaker.QuotaTooLow) as refusal:
        deploy(cloud_session, trained_models["iris"])
    with pytest.raises(sagemaker.QuotaTooLow):
        plan.plan(NAME, cloud_session)

    message = str(refusal.value)
    assert "'ml.m5.large for endpoint usage'" in message and "needs 1" in message
    assert "servicequotas/home/services/sagemaker/quotas" in message and "--serverless" in message
    assert left_of(cloud_session) == []
    quota({"ml.m5.large": 1})
    assert "checked: quota 'ml.m5.large for endpoint usage': 1, this deploy uses 1" in plan.plan(NAME, cloud_session)


def test_a_given_role_that_cannot_read_the_artifact_is_refused_before_anything_is_created(
    cloud_session, trained_models, clean
):
    iam = cloud_session.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    # What AmazonSageMakerFullAccess grants on S3 objects: buckets with "sagemaker" in the name only.
    notebook_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": ["arn:aws:s3:::*SageMaker*", "arn:aws:s3:::*Sagemaker*", "arn:aws:s3:::*sagemaker*"],
            },
            {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
        ],
    }
    role = iam.create_role(
        RoleName="NotebookRole-life", Path="/service-role/", AssumeRolePolicyDocument=json.dumps(trust)
    )
    arn = role["Role"]["Arn"]
    try:
        iam.put_role_policy(
            RoleName="NotebookRole-life", PolicyName="full-access", PolicyDocument=json.dumps(notebook_policy)
        )
        with pytest.raises(CloudError) as refusal:
            deploy(cloud_session, trained_models["iris"], role_arn=arn)
        message = str(refusal.value)
        assert f"role {arn} may not s3:GetObject" in message and "nothing was created" in message
        # l2c's bucket is in the account regional namespace (docs/deploy.md).
        assert f"s3:GetObject on arn:aws:s3:::l2c-{cloud_session.account}-{cloud_session.region}-an/{NAME}/*" in message
        assert left_of(cloud_session) == []

        # Granted exactly what the message asks for, the same role deploys and serves.
        bucket = f"l2c-{cloud_session.account}-{cloud_session.region}-an"
        grant = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/{NAME}/*"}],
        }
        iam.put_role_policy(RoleName="NotebookRole-life", PolicyName="l2c-artifacts", PolicyDocument=json.dumps(grant))
        deployment = deploy(cloud_session, trained_models["iris"], role_arn=arn)
        model = cloud_session.client("sagemaker").describe_model(
            ModelName=sagemaker.model_name(NAME, deployment.model_version)
        )
        assert model["ExecutionRoleArn"] == arn
        assert answers(cloud_session) == 200
    finally:
        teardown.destroy(NAME, session=cloud_session, reporter=Reporter())
        for policy in ("full-access", "l2c-artifacts"):
            try:
                iam.delete_role_policy(RoleName="NotebookRole-life", PolicyName=policy)
            except iam.exceptions.NoSuchEntityException:
                pass
        iam.delete_role(RoleName="NotebookRole-life")


# --------------------------------------------------------------------------- autoscaling, missing pieces


def test_a_new_instance_type_on_an_autoscaled_endpoint_is_applied_and_scaling_kept(
    cloud_session, trained_models, clean
):
    deploy(cloud_session, trained_models["iris"], autoscale=(1, 3))

    moved = deploy(
        cloud_session, trained_models["iris"], hosting=Hosting(instance_type="ml.c5.large"), autoscale=(1, 3)
    )

    assert moved.endpoint_change == "updated"
    sm = cloud_session.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    )
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.c5.large"
    target = sagemaker.scalable_target(cloud_session, ENDPOINT)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    assert answers(cloud_session) == 200


def test_status_and_destroy_tolerate_an_endpoint_whose_config_was_deleted(cloud_session, trained_models):
    deploy(cloud_session, trained_models["iris"])
    sm = cloud_session.client("sagemaker")
    config = sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    sm.delete_endpoint_config(EndpointConfigName=config)  # AWS allows it under a live endpoint

    endpoint = next(r for r in inventory.status(cloud_session).of(NAME) if r.kind == "endpoint")
    assert f"config {config} missing" in endpoint.detail and "billed hourly" in endpoint.detail

    teardown.destroy(NAME, session=cloud_session, reporter=Reporter())
    assert left_of(cloud_session) == []


def test_destroy_all_tolerates_an_endpoint_whose_config_was_deleted(cloud_session, trained_models):
    from aws_helpers import everything_l2c_left  # every service listed, not only this stack's names

    deploy(cloud_session, trained_models["iris"])
    sm = cloud_session.client("sagemaker")
    sm.delete_endpoint_config(EndpointConfigName=sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"])

    report = teardown.destroy(everything=True, session=cloud_session, reporter=Reporter())

    assert NAME in report.stacks and f"endpoint {ENDPOINT}" in report.deleted
    assert left_of(cloud_session) == []
    assert everything_l2c_left(cloud_session) == []


# --------------------------------------------------------------------------- the commands themselves


def l2c(*arguments: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("l2c")), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def test_the_commands_refuse_a_zero_quota_in_one_message_then_deploy_and_destroy_to_nothing(
    cloud_session, trained_models, quota
):
    quota({"ml.m5.large": 0})
    refused = l2c("deploy", NAME, "--model-dir", str(trained_models["iris"]))
    assert refused.returncode != 0
    assert "ml.m5.large for endpoint usage" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr + refused.stdout
    assert left_of(cloud_session) == []

    quota({"ml.m5.large": None})
    deployed = l2c("deploy", NAME, "--model-dir", str(trained_models["iris"]))
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
    destroyed = l2c("destroy", NAME)
    assert destroyed.returncode == 0, destroyed.stdout[-2000:] + destroyed.stderr[-2000:]
    assert left_of(cloud_session) == []
