"""The prediction page's generator: what it embeds, how safely, per task, and the key rule."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat

import pytest
from typer.testing import CliRunner

from l2c import datasets, training
from l2c.cli import app
from l2c.page import PageConfig, PageError, page_card, render, script_json
from l2c.page import deployed as deployed_page

URL = "https://abc123defg.execute-api.eu-west-1.amazonaws.com/test/irisprediction"
KEY = "a-real-looking-api-key-0123456789abcdef"
IRIS_CARD = {
    "name": "iris",
    "task": "classification",
    "feature_names": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
    "feature_ranges": {
        "sepal_length": [4.3, 7.9],
        "sepal_width": [2.0, 4.4],
        "petal_length": [1.0, 6.9],
        "petal_width": [0.1, 2.5],
    },
    "class_labels": ["setosa", "versicolor", "virginica"],
    "target": {"name": "species"},
    "booster_sha256": "978b96d0364c" + "0" * 52,
    "sample_rows": [[5.1, 3.3, 1.7, 0.5], [6.2, 2.9, 4.3, 1.3]],
    "sample_predictions": [[0.98, 0.01, 0.01], [0.1, 0.8, 0.1]],
}
HOUSE_CARD = {
    "name": "house-price",
    "task": "regression",
    "feature_names": ["CRIM", "ZN"],
    "class_labels": None,
    "target": {"name": "MEDV", "unit": "$1000s", "currency": "USD", "scale": 1000},
    "metrics": {"test_split": {"rmse": 2.9, "r2": float("nan")}},
}
CONFIG_BLOCK = re.compile(r'<script type="application/json" id="l2c-config">(.*?)</script>', re.S)


def embedded(html: str) -> dict:
    return json.loads(CONFIG_BLOCK.search(html)[1])


def csp_of(html: str) -> str:
    import html as html_module

    return html_module.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)[1])


# --------------------------------------------------------------------------- escaping


def test_script_json_cannot_close_the_script_element_and_reads_back_unchanged():
    hostile = {"name": "</script><script>alert(1)</script><!-- & \u2028\u2029"}
    text = script_json(hostile)
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in text
    assert json.loads(text) == hostile


def test_a_hostile_feature_name_stays_data_in_the_rendered_page():
    name = '</script><script>alert("x")</script>'
    card = {**IRIS_CARD, "name": "<b>iris</b>", "feature_names": [name, "b", "c", "d"]}
    html = render(PageConfig("iris", URL, card, KEY))
    # Only the page's own two script elements: the config block and its script.
    assert html.count("<script") == 2 and html.count("</script>") == 2
    assert embedded(html)["card"]["feature_names"][0] == name
    assert "<title>&lt;b&gt;iris&lt;/b&gt; prediction</title>" in html


def test_text_that_looks_like_a_placeholder_is_not_filled_in():
    card = {**IRIS_CARD, "feature_names": ["{{script}}", "{{config}}", "{{style}}", "{{csp}}"]}
    html = render(PageConfig("iris", URL, card))
    assert html.count('"use strict"') == 1  # the script is in the page once, not also inside the config
    assert embedded(html)["card"]["feature_names"] == ["{{script}}", "{{config}}", "{{style}}", "{{csp}}"]


def test_the_csp_runs_only_the_pages_own_script_and_style_and_talks_only_to_the_api():
    html = render(PageConfig("iris", URL, IRIS_CARD, KEY))
    policy = csp_of(html)
    script = re.search(r"<script>(.*?)</script>", html, re.S)[1]
    style = re.search(r"<style>(.*?)</style>", html, re.S)[1]
    for inline in (script, style):
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "connect-src https://abc123defg.execute-api.eu-west-1.amazonaws.com;" in policy
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy


def test_an_invoke_url_that_is_not_http_is_refused():
    with pytest.raises(PageError, match="not an http"):
        render(PageConfig("iris", "javascript:alert(1)", IRIS_CARD))


# --------------------------------------------------------------------------- what the page gets of the card


def test_the_page_gets_the_cards_fields_for_a_person_and_one_example_row():
    card = page_card(IRIS_CARD)
    assert card["class_labels"] == ["setosa", "versicolor", "virginica"]
    assert card["feature_ranges"]["sepal_length"] == [4.3, 7.9]
    assert card["sample_rows"] == [[5.1, 3.3, 1.7, 0.5]]
    assert "booster_sha256" not in card and "sample_predictions" not in card


def test_a_regression_page_carries_the_unit_and_no_nan():
    html = render(PageConfig("house-price", URL.replace("iris", "houseprice"), HOUSE_CARD, None, key_required=False))
    config = embedded(html)
    assert config["card"]["task"] == "regression"
    assert config["card"]["target"] == {"name": "MEDV", "unit": "$1000s", "currency": "USD", "scale": 1000}
    assert config["card"]["metrics"]["test_split"]["r2"] is None  # NaN is no JSON
    assert config["key_required"] is False and config["api_key"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"feature_names": []}, "no feature_names"),
        ({"feature_names": "a,b"}, "no feature_names"),
        ({"task": "ranking"}, "not one of classification, regression"),
    ],
)
def test_a_card_the_page_cannot_use_is_refused(change, message):
    with pytest.raises(PageError, match=message):
        page_card({**IRIS_CARD, **change})


def test_the_card_records_each_features_range_and_the_targets_unit(trained_models):
    iris = json.loads((trained_models["iris"] / "model_card.json").read_text())
    assert iris["feature_ranges"] == {
        "sepal_length": [4.3, 7.9],
        "sepal_width": [2.0, 4.4],
        "petal_length": [1.0, 6.9],
        "petal_width": [0.1, 2.5],
    }
    assert iris["target"] == {"name": "species"}
    house = json.loads((trained_models["house-price"] / "model_card.json").read_text())
    assert house["feature_ranges"]["CHAS"] == [0.0, 1.0] and house["feature_ranges"]["TAX"] == [187.0, 711.0]
    assert house["target"]["unit"] == "$1000s" and house["target"]["scale"] == 1000


def test_a_column_of_missing_values_has_no_range(tmp_path):
    path = tmp_path / "own.csv"
    path.write_text("a,b,y\n1,,0.5\n3,,1.5\n")
    own = datasets.load_csv(path, target="y", task="regression")
    assert training.feature_ranges(own) == {"a": [1.0, 3.0], "b": None}


# --------------------------------------------------------------------------- the card a deployed stack's page uses


def test_the_model_folders_card_is_used_only_for_the_version_deployed(tmp_path, monkeypatch):
    (tmp_path / "model_card.json").write_text(json.dumps(IRIS_CARD))
    from_function = {
        "name": "iris",
        "task": "classification",
        "feature_names": ["w", "x", "y", "z"],
        "class_labels": ["a", "b"],
    }
    monkeypatch.setattr(deployed_page, "card_from_function", lambda session, name: from_function)
    monkeypatch.setattr(deployed_page, "deployed_version", lambda session, name: "978b96d0364c")
    assert deployed_page.find_card(None, "iris", [tmp_path]).card == IRIS_CARD
    monkeypatch.setattr(
        deployed_page, "deployed_version", lambda session, name: "aaaaaaaaaaaa"
    )  # retrained, not redeployed
    found = deployed_page.find_card(None, "iris", [tmp_path])
    assert found.card == from_function and found.source == "the deployed function l2c-iris"


def test_without_a_card_the_page_takes_the_deployed_functions_columns_and_labels(monkeypatch):
    variables = {"ENDPOINT_NAME": "l2c-iris", "FEATURE_NAMES": "a,b", "CLASS_LABELS": "setosa,versicolor"}
    monkeypatch.setattr(
        deployed_page.functions, "get_configuration", lambda session, name: {"Environment": {"Variables": variables}}
    )
    monkeypatch.setattr(deployed_page.calling, "deployed_feature_names", lambda session, name: ["a", "b"])
    card = deployed_page.card_from_function(None, "iris")
    assert card == {
        "name": "iris",
        "task": "classification",
        "feature_names": ["a", "b"],
        "class_labels": ["setosa", "versicolor"],
    }
    del variables["CLASS_LABELS"]
    assert deployed_page.card_from_function(None, "iris")["task"] == "regression"


# --------------------------------------------------------------------------- the key rule


@pytest.fixture
def deployed_iris(monkeypatch):
    monkeypatch.setattr(deployed_page.calling, "api_access", lambda session, name: (URL, KEY))
    monkeypatch.setattr(
        deployed_page, "find_card", lambda session, name, dirs: deployed_page.FoundCard(IRIS_CARD, "models/iris")
    )


def test_a_written_page_holds_no_key_unless_asked(tmp_path, deployed_iris):
    written = deployed_page.write_page(None, "iris", tmp_path / "iris.html")
    text = written.path.read_text()
    assert KEY not in text and not written.holds_key
    assert embedded(text)["api_key"] is None and embedded(text)["key_required"] is True
    assert embedded(text)["invoke_url"] == URL


def test_with_key_the_file_holds_it_readable_by_its_owner_only(tmp_path, deployed_iris):
    written = deployed_page.write_page(None, "iris", tmp_path / "iris.html", with_key=True)
    assert embedded(written.path.read_text())["api_key"] == KEY and written.holds_key
    assert stat.S_IMODE(written.path.stat().st_mode) == 0o600


def test_the_default_file_is_pages_name_html(tmp_path, monkeypatch, deployed_iris):
    monkeypatch.chdir(tmp_path)
    written = deployed_page.write_page(None, "iris")
    assert written.path == deployed_page.PAGES_DIR / "iris.html" and (tmp_path / "pages" / "iris.html").is_file()


def test_l2c_page_without_a_running_local_cloud_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("L2C_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(app, ["page", "iris", "-o", str(tmp_path / "iris.html")])
    assert result.exit_code == 1
    assert "no local cloud is running: start one with `l2c up`" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "iris.html").exists()
