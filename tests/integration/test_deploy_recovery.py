"""Deploys that stop half-way: the next deploy finishes the job, destroy cleans up either way."""

from __future__ import annotations

import httpx
import pytest

from l2c.cloud import functions, inventory, sagemaker, stack, teardown
from l2c.cloud.progress import Reporter
from l2c.local.tutorial import TUTORIAL_BODIES

NAME = "iris-retry"  # a stack of its own: the other modules' stacks stay out of the way


class Interrupted(RuntimeError):
    pass


def interrupt(*args, **kwargs):
    raise Interrupted("the connection dropped")


@pytest.fixture
def clean(cloud_session):
    yield
    teardown.destroy(NAME, session=cloud_session, reporter=Reporter())


def kinds(session, name=NAME) -> list[tuple[str, str]]:
    return sorted((r.service, r.kind) for r in inventory.status(session).of(name))


def test_a_deploy_interrupted_before_the_function_is_finished_by_the_next(
    cloud_session, trained_models, monkeypatch, clean
):
    monkeypatch.setattr(functions, "ensure_function", interrupt)
    with pytest.raises(Interrupted):
        stack.deploy(NAME, trained_models["iris"], session=cloud_session, reporter=Reporter())
    half = kinds(cloud_session)
    assert ("sagemaker", "endpoint") in half and ("lambda", "function") not in half
    monkeypatch.undo()

    deployment = stack.deploy(NAME, trained_models["iris"], session=cloud_session, reporter=Reporter())

    assert deployment.endpoint_change == "unchanged"
    assert "function created" in deployment.changes
    assert kinds(cloud_session) == sorted(
        [
            # two log groups: the function's, and the endpoint's (its instances write there)
            ("iam", "role"),
            ("iam", "role"),
            ("lambda", "function"),
            ("logs", "log-group"),
            ("logs", "log-group"),
            ("s3", "object"),
            ("sagemaker", "endpoint"),
            ("sagemaker", "endpoint-config"),
            ("sagemaker", "model"),
        ]
    )
    response = httpx.post(
        deployment.url, json=TUTORIAL_BODIES["iris"], headers={"x-api-key": deployment.api_key}, timeout=60
    )
    assert response.status_code == 200 and response.json()["prediction"] == "setosa"


def test_a_deploy_interrupted_while_routing_is_finished_by_the_next(cloud_session, trained_models, monkeypatch, clean):
    from l2c.cloud import apigateway

    monkeypatch.setattr(apigateway, "ensure_stage_deployed", interrupt)
    with pytest.raises(Interrupted):
        stack.deploy(NAME, trained_models["iris"], session=cloud_session, reporter=Reporter())
    monkeypatch.undo()

    deployment = stack.deploy(NAME, trained_models["iris"], session=cloud_session, reporter=Reporter())

    assert f"stage {apigateway.STAGE} deployed" in deployment.changes
    response = httpx.post(
        deployment.url, json=TUTORIAL_BODIES["iris"], headers={"x-api-key": deployment.api_key}, timeout=60
    )
    assert response.status_code == 200


def test_destroy_removes_a_stack_that_never_got_an_endpoint(cloud_session, trained_models, monkeypatch):
    monkeypatch.setattr(sagemaker, "ensure_endpoint", interrupt)
    with pytest.raises(Interrupted):
        stack.deploy(NAME, trained_models["iris"], session=cloud_session, reporter=Reporter())
    assert ("sagemaker", "model") in kinds(cloud_session)

    report = teardown.destroy(NAME, session=cloud_session, reporter=Reporter())

    assert report.stacks == [NAME]
    assert kinds(cloud_session) == []
    assert inventory.status(cloud_session).resources == []  # the bucket went with its last object


def test_destroying_a_stack_that_does_not_exist_is_harmless(cloud_session):
    report = teardown.destroy("never-deployed", session=cloud_session, reporter=Reporter())
    assert report.deleted == []
