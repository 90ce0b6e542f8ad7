"""The prediction page in real headless Chromium, against both tutorial models in the local cloud.

The page is served by the cloud's edge and calls the API on the gateway's port: another origin,
so every prediction below is a cross-origin fetch with ``x-api-key`` (preflight included), as a
page on any web server calling API Gateway makes it.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from functools import partial

import httpx
import pytest
from page_driver import PredictionPage

from l2c.local.tutorial import TUTORIAL_BODIES

pytestmark = pytest.mark.integration

IRIS_ROW = TUTORIAL_BODIES["iris"]["data"]  # the tutorial's flower, as its sample file writes it
HOUSE_ROW = TUTORIAL_BODIES["house-price"]["data"]


def api_answer(deployment, row: str) -> dict:
    response = httpx.post(deployment.url, json={"data": row}, headers={"x-api-key": deployment.api_key}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------------- the pages the cloud serves


def test_the_cloud_serves_each_stacks_page_with_the_local_api_and_key(page_urls, deployed):
    for name, url in page_urls.items():
        response = httpx.get(url, timeout=30)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        config = json.loads(
            re.search(r'<script type="application/json" id="l2c-config">(.*?)</script>', response.text, re.S)[1]
        )
        assert config["invoke_url"] == deployed[name].url
        assert config["api_key"] == deployed[name].api_key and config["key_required"] is True
        assert config["card"]["feature_ranges"], "the card came from the model folder"


def test_the_pages_index_lists_the_deployed_stacks_and_an_unknown_stack_is_a_404(local_cloud, page_urls):
    edge = local_cloud.env["AWS_ENDPOINT_URL"]
    index = httpx.get(f"{edge}/_l2c/pages/", timeout=30)
    assert index.status_code == 200
    for url in page_urls.values():
        assert f'href="{url.removeprefix(edge)}"' in index.text
    missing = httpx.get(f"{edge}/_l2c/pages/no-such-stack/", timeout=30)
    assert missing.status_code == 404 and "no-such-stack has no API route" in missing.text


# --------------------------------------------------------------------------- in the browser


def test_the_iris_page_labels_each_feature_with_its_range_and_holds_the_local_key(browser, page_urls, deployed):
    page = PredictionPage(browser, page_urls["iris"])
    assert page.features() == [
        ("sepal_length", "4.3 – 7.9"),
        ("sepal_width", "2 – 4.4"),
        ("petal_length", "1 – 6.9"),
        ("petal_width", "0.1 – 2.5"),
    ]
    assert page.key() == deployed["iris"].api_key


def test_the_tutorials_flower_is_a_setosa_with_three_probability_bars(browser, page_urls, deployed):
    page = PredictionPage(browser, page_urls["iris"])
    page.paste_row(IRIS_ROW)
    assert page.values() == ["5.1", "3.3", "1.7", "0.5"]
    assert page.predict() == "classification", page.text("#result")
    assert page.text("#result .verdict .label") == "setosa"
    bars = page.bars()
    assert [label for label, _ in bars] == ["setosa", "versicolor", "virginica"]
    expected = api_answer(deployed["iris"], IRIS_ROW)["predictions"][0]["probabilities"]
    assert dict(bars) == pytest.approx(expected, abs=1e-6)
    assert max(bars, key=lambda bar: bar[1])[0] == "setosa"
    assert page.all("#result .bar-row.top")[0].get_attribute("data-label") == "setosa"


def test_a_wrong_key_shows_the_gateways_403_and_its_reason(browser, page_urls):
    page = PredictionPage(browser, page_urls["iris"])
    page.type_values(["5.1", "3.5", "1.4", "0.2"])
    page.set_key("not-the-key-of-this-api-at-all")
    assert page.predict() == "error", page.text("#result")  # not "error network": the browser read the answer
    assert page.text("#result .status") == "HTTP 403 Forbidden"
    assert page.text("#result .message") == "Forbidden"  # API Gateway's own body: {"message": "Forbidden"}


def test_a_value_that_is_no_number_shows_the_functions_message(browser, page_urls):
    page = PredictionPage(browser, page_urls["iris"])
    page.type_values(["5.1", "three", "1.4", "0.2"])
    assert page.predict() == "error", page.text("#result")
    assert page.text("#result .status") == "HTTP 400 Bad Request"
    assert page.text("#result .message") == "row 1, value 2 is 'three', not a number"


def test_the_house_price_page_shows_the_price_in_dollars(browser, page_urls, deployed):
    page = PredictionPage(browser, page_urls["house-price"])
    assert [name for name, _ in page.features()][:3] == ["CRIM", "ZN", "INDUS"] and len(page.features()) == 13
    page.paste_row(HOUSE_ROW)
    assert page.predict() == "regression", page.text("#result")
    value = api_answer(deployed["house-price"], HOUSE_ROW)["prediction"]  # MEDV, in $1000s
    assert page.text("#result .verdict .value") == f"${round(value * 1000):,}"
    assert "in $1000s" in page.text("#result .detail")


# --------------------------------------------------------------------------- `l2c page`: a file, without the key


@pytest.fixture
def served_folder(tmp_path):
    """A plain web server on a free port serving ``tmp_path``: another origin than the edge's."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_l2c_page_writes_a_page_without_the_key_that_asks_for_it(browser, deployed, cloud_env, served_folder):
    from typer.testing import CliRunner

    from l2c.cli import app

    folder, origin = served_folder
    result = CliRunner().invoke(app, ["page", "iris", "-o", str(folder / "iris.html")])
    assert result.exit_code == 0, result.output
    text = (folder / "iris.html").read_text()
    assert deployed["iris"].api_key not in text and deployed["iris"].url in text
    page = PredictionPage(browser, f"{origin}/iris.html")
    assert page.key() == ""
    assert "holds no key" in page.text("#key-note")
    # This origin is not the one the local API allows: the browser withholds the answer, and the
    # page says why instead of showing nothing.
    page.set_key(deployed["iris"].api_key)
    page.paste_row(IRIS_ROW)
    assert page.predict() == "error network"
    assert "Could not reach the API" in page.text("#result .status")
    assert f"this page's origin ({origin})" in page.text("#result") and "CORS" in page.text("#result")
