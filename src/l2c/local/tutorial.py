"""The tutorial's two models and request bodies, and the HTTP calls `l2c up` and `l2c demo` make with them.

It imports neither xgboost nor boto3: `l2c up` reads it before deciding whether to load either.
"""

from __future__ import annotations

import json

import httpx

MODELS = ("iris", "house-price")
# The request bodies of the tutorial's Postman screenshots (its test_point_*_sample.csv rows).
TUTORIAL_BODIES = {
    "iris": {
        "data": "5.099999999999999645e+00,3.299999999999999822e+00,1.699999999999999956e+00,5.000000000000000000e-01"
    },
    "house-price": {
        "data": "3.77E-02,8.00E+01,1.52E+00,0.00E+00,4.04E-01,7.27E+00,3.83E+01,"
        "7.31E+00,2.00E+00,3.29E+02,1.26E+01,3.92E+02,6.62E+00"
    },
}


def post(url: str, body: dict, api_key: str | None) -> tuple[int, dict]:
    headers = {"x-api-key": api_key} if api_key else {}
    response = httpx.post(url, json=body, headers=headers, timeout=60)
    return response.status_code, response.json()


def page_status(url: str) -> int:
    return httpx.get(url, timeout=30).status_code


def answer_text(name: str, status: int, answer: dict) -> str:
    if status != 200:
        return f"HTTP {status}: {json.dumps(answer)}"
    prediction = answer.get("prediction")
    if name == "house-price" and isinstance(prediction, (int, float)):
        return f"predicted median value {prediction:.2f} (in $1000s)"
    return f"predicted species {prediction}"
