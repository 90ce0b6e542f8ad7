"""Whether API Gateway lets a routed request through: stage throttling, the API key, its usage plans.

A method that requires an API key gets one from ``x-api-key``: unknown, disabled, not in a usage
plan of this stage, or created a few (paced) seconds ago -> 403 ``Forbidden``; over the plan's
throttle (token bucket of rate and burst) or quota -> 429. The stage's method throttling (method
settings ``*/*`` or the method's own: rate and burst for every caller together) -> 429 past it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time

from l2c.local.gateway.messages import ApiRoute, GatewayError, Request, forbidden
from l2c.local.rules import apigateway as apigateway_rules


class TokenBucket:
    def __init__(self, rate: float, burst: int):
        self.rate, self.capacity = max(rate, 0.0), max(burst, 0)
        self.tokens, self.updated = float(self.capacity), time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


class Admission:
    def __init__(self, apigateway, change_count=None) -> None:
        """``change_count() -> int``: moto's count of changes (l2c.local.change_count.changes);
        while it stands still, the index of API keys is not rebuilt."""
        self._apigateway = apigateway
        self._buckets: dict[tuple, TokenBucket] = {}
        self._quota_used: dict[tuple, int] = {}
        self._limits_lock = threading.Lock()
        self._change_count = change_count
        self._keys: tuple[int | None, dict[bytes, dict]] = (None, {})

    def check_key(self, route: ApiRoute, request: Request) -> dict | None:
        if not route.method.get("apiKeyRequired"):
            return None
        value = request.header("x-api-key")
        if not value:
            raise forbidden()
        key = self.find_key(value)
        if key is None or not apigateway_rules.key_is_usable(key["id"]):
            raise forbidden()
        plans = [
            plan
            for plan in self._apigateway.get_usage_plans(keyId=key["id"])["items"]
            if any(
                s["apiId"] == route.api_id and s["stage"] == route.stage["stageName"] for s in plan.get("apiStages", [])
            )
        ]
        if not plans or not apigateway_rules.key_is_usable(key["id"]):
            raise forbidden()
        for plan in plans:
            self._charge(plan, key["id"])
        return key

    def find_key(self, value: str) -> dict | None:
        """The enabled key with this value: one look-up by the value's digest, then a constant-time
        comparison, so the time taken tells a caller neither how many keys exist nor how much of
        a guess was right."""
        key = self._key_index().get(_digest(value))
        if key is None or not hmac.compare_digest(key["value"].encode(), value.encode()):
            return None
        return key

    def _key_index(self) -> dict[bytes, dict]:
        seen = self._change_count() if self._change_count is not None else None
        kept_at, index = self._keys
        if seen is not None and kept_at == seen:
            return index
        index = {}
        for page in self._apigateway.get_paginator("get_api_keys").paginate(includeValues=True):
            for key in page["items"]:
                if key.get("enabled") and key.get("value"):
                    index.setdefault(_digest(key["value"]), key)  # the first listed wins, as AWS's scan
        self._keys = (seen, index)
        return index

    def _charge(self, plan: dict, key_id: str) -> None:
        """Count one request against the plan: quota first (429 Limit Exceeded), then the throttle."""
        window = _quota_window(plan, key_id)
        with self._limits_lock:
            if window is not None and self._quota_used.get(window, 0) >= plan["quota"]["limit"]:
                raise GatewayError(429, "Limit Exceeded", "LimitExceededException", "QUOTA_EXCEEDED")
            bucket = self._bucket(plan, key_id)
        if bucket is not None and not bucket.take():
            raise GatewayError(429, "Too Many Requests", "TooManyRequestsException", "THROTTLED")
        if window is not None:
            with self._limits_lock:
                self._quota_used[window] = self._quota_used.get(window, 0) + 1

    def throttle_stage(self, route: ApiRoute) -> None:
        """The stage's method throttling (its ``*/*`` method settings, or the method's own), for
        every caller together, key or not; over it -> 429, as API Gateway answers."""
        settings = route.stage.get("methodSettings") or {}
        own = settings.get(route.resource.get("path", "").replace("/", "~1") + "/" + route.verb)
        found = own or settings.get("*/*") or {}
        rate, burst = found.get("throttlingRateLimit"), found.get("throttlingBurstLimit")
        if rate is None or burst is None or float(rate) < 0:
            return
        key = ("stage", route.api_id, route.stage.get("stageName"), float(rate), int(burst))
        with self._limits_lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(float(rate), int(burst))
        if not bucket.take():
            raise GatewayError(429, "Too Many Requests", "TooManyRequestsException", "THROTTLED")

    def _bucket(self, plan: dict, key_id: str) -> TokenBucket | None:
        throttle = plan.get("throttle")
        if not throttle:
            return None
        rate, burst = float(throttle.get("rateLimit", 0)), int(throttle.get("burstLimit", 0))
        # Keyed by the limits too: a plan updated with new limits starts a fresh bucket.
        key = (plan["id"], key_id, rate, burst)
        if key not in self._buckets:
            self._buckets[key] = TokenBucket(rate, burst)
        return self._buckets[key]


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _quota_window(plan: dict, key_id: str) -> tuple | None:
    quota = plan.get("quota")
    if not quota:
        return None
    return plan["id"], key_id, quota["period"], _period_start(quota["period"]), quota["limit"]


def _period_start(period: str) -> str:
    now = time.gmtime()
    if period == "DAY":
        return time.strftime("%Y-%m-%d", now)
    if period == "WEEK":
        return time.strftime("%Y-W%W", now)
    return time.strftime("%Y-%m", now)
