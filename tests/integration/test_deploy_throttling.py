"""Every API l2c creates is throttled stage-wide, for all callers together: a public API (no key,
so no usage plan applies) too. Proved through the local gateway, which enforces the stage's
method settings as API Gateway does."""

from __future__ import annotations

import httpx

from l2c.cloud import apigateway, plan, stack, teardown
from l2c.cloud.apigateway import Limits
from l2c.cloud.progress import Reporter

BODY = {"data": "5.1,3.5,1.4,0.2"}
TIGHT = Limits(rate_limit=1.0, burst_limit=3, quota_limit=100_000)


def test_a_public_api_is_throttled_stage_wide_and_its_stage_says_so(cloud_session, trained_models):
    options = plan.DeployOptions(public=True, limits=TIGHT)
    deployment = stack.deploy(
        "irisopen", trained_models["iris"], session=cloud_session, options=options, reporter=Reporter()
    )
    try:
        api = apigateway.find_rest_api(cloud_session)
        settings = apigateway.get_stage(cloud_session, api["id"])["methodSettings"]["*/*"]
        assert (settings["throttlingRateLimit"], settings["throttlingBurstLimit"]) == (1.0, 3)
        assert deployment.api_key is None  # no key: the usage plan cannot limit these callers
        answers = [httpx.post(deployment.url, json=BODY, timeout=60) for _ in range(8)]
        codes = [answer.status_code for answer in answers]
        assert codes.count(200) >= 1 and codes.count(429) >= 3, codes
        throttled = next(answer for answer in answers if answer.status_code == 429)
        assert throttled.json() == {"message": "Too Many Requests"}
        assert throttled.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    finally:
        teardown.destroy("irisopen", session=cloud_session, reporter=Reporter())
        # The stage is shared: later tests get the default limits back with their next deploy.
        api = apigateway.find_rest_api(cloud_session)
        if api is not None:
            apigateway.ensure_stage_throttling(cloud_session, api["id"], Limits())


def test_a_redeploy_with_the_same_limits_changes_nothing_and_new_limits_are_applied(cloud_session, trained_models):
    first = stack.deploy("iristhrottle", trained_models["iris"], session=cloud_session, reporter=Reporter())
    try:
        again = stack.deploy("iristhrottle", trained_models["iris"], session=cloud_session, reporter=Reporter())
        assert not any("throttled" in change for change in again.changes)
        wider = plan.DeployOptions(limits=Limits(rate_limit=50.0, burst_limit=80))
        changed = stack.deploy(
            "iristhrottle", trained_models["iris"], session=cloud_session, options=wider, reporter=Reporter()
        )
        assert any("throttled to 50 requests/s (burst 80)" in change for change in changed.changes)
        api = apigateway.find_rest_api(cloud_session)
        settings = apigateway.get_stage(cloud_session, api["id"])["methodSettings"]["*/*"]
        assert (settings["throttlingRateLimit"], settings["throttlingBurstLimit"]) == (50.0, 80)
        assert first.url == changed.url
    finally:
        teardown.destroy("iristhrottle", session=cloud_session, reporter=Reporter())
        api = apigateway.find_rest_api(cloud_session)
        if api is not None:
            apigateway.ensure_stage_throttling(cloud_session, api["id"], Limits())


def test_the_plan_says_every_caller_is_throttled_and_suggests_a_budget_alert(cloud_session):
    lines = plan.plan("iris", cloud_session, plan.DeployOptions(public=True, limits=TIGHT))
    assert any("no API key (PUBLIC)" in line and "throttled to 1 requests/s for all callers" in line for line in lines)
    assert any(line.startswith("tip: an AWS Budgets alert") for line in lines)
