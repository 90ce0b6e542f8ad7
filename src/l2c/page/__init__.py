"""The prediction page: one self-contained HTML file, built from a model card, that calls an API.

A person fills in one labelled input per feature (the data set's range beside it), or pastes a
CSV row; the page POSTs ``{"data": "v1,v2,..."}`` with ``x-api-key`` to the invoke URL, as the
Lambda handler takes it (src/l2c/lambda/lambda_function.py), and shows the answer as that person wants
it: the class with a bar per class probability, or the value with its unit. An error shows the
API's own message and status; a request the browser could not complete (no network, or a CORS
refusal) says so.

Everything the page needs (invoke URL, key, the card's fields) is embedded as one JSON script
block; the style and script are inline too, so the file works wherever it is served from. What
the card holds is text from a training CSV: it reaches the page only through that JSON block
(escaped so no value can close the script element) and ``textContent``, never as markup.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

from l2c.errors import L2CError

# What the page shows of a model card; the rest (hashes, parameters, sample predictions) stays out.
PAGE_CARD_FIELDS = (
    "name",
    "task",
    "objective",
    "feature_names",
    "feature_ranges",
    "class_labels",
    "target",
    "metrics",
    "xgboost_version",
    "created_at",
)
SAMPLE_ROWS_SHOWN = 1  # the card's first test row: the page's "use an example"
TASKS = ("classification", "regression")
PLACEHOLDER = re.compile(r"\{\{(?:csp|title|style|config|script)\}\}")


class PageError(L2CError, ValueError):
    """A page cannot be built from what it was given."""


@dataclass(frozen=True)
class PageConfig:
    """What one page is for: a stack's API and the model behind it."""

    stack: str
    invoke_url: str
    card: dict
    api_key: str | None = None  # embedded in the page; None: the page asks for it
    key_required: bool = True  # False: a public API (deployed with --public), no key field

    def as_json(self) -> dict:
        return {
            "stack": self.stack,
            "invoke_url": self.invoke_url,
            "api_key": self.api_key,
            "key_required": self.key_required,
            "card": page_card(self.card),
        }


def page_card(card: dict) -> dict:
    """The fields of a model card the page uses, checked enough that the page can rely on them."""
    names = card.get("feature_names")
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise PageError("the model card has no feature_names list: train the model with `l2c train`")
    if card.get("task") not in TASKS:
        raise PageError(f"the model card's task is {card.get('task')!r}, not one of {', '.join(TASKS)}")
    shown = {field: card[field] for field in PAGE_CARD_FIELDS if field in card}
    shown["sample_rows"] = list(card.get("sample_rows") or [])[:SAMPLE_ROWS_SHOWN]
    return _finite(shown)


def _finite(value):
    """JSON has no NaN or infinity (the card may: a metric of a degenerate split); the page gets null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def script_json(value) -> str:
    """``value`` as JSON that is safe inside a <script> element.

    The HTML parser ends a script element at the first ``</script`` whatever the JSON means, and
    ``<!--`` changes how it reads on: so ``<``, ``>`` and ``&`` are written as JSON's ``\\u003c``
    escapes, which JSON.parse reads back unchanged (HTML Living Standard, "Restrictions for contents
    of script elements"). U+2028/U+2029 are escaped too: older JavaScript engines end a string there.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def api_origin(invoke_url: str) -> str:
    parts = urlsplit(invoke_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PageError(f"{invoke_url!r} is not an http(s) invoke URL")
    return f"{parts.scheme}://{parts.netloc}"


def render(config: PageConfig) -> str:
    """The page's HTML, ready to write to a file or to serve.

    Its Content-Security-Policy lets it run only its own inline style and script (by hash) and
    talk only to the API's origin: even a hostile card could not make it load or send anything
    elsewhere."""
    style, script = _asset("page.css"), _asset("page.js")
    csp = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_csp_hash(script)}",
            f"style-src {_csp_hash(style)}",
            f"connect-src {api_origin(config.invoke_url)}",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )
    card = page_card(config.card)
    title = f"{card.get('name') or config.stack} prediction"
    replacements = {
        "{{csp}}": html.escape(csp, quote=True),
        "{{title}}": html.escape(title),
        "{{style}}": style,
        "{{config}}": script_json(config.as_json()),
        "{{script}}": script,
    }
    # One pass over the template: a value is never scanned again, so a card's text that looks
    # like a placeholder stays text.
    return PLACEHOLDER.sub(lambda match: replacements[match[0]], _asset("page.html"))
