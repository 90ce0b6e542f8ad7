"""The local cloud serves each deployed stack's prediction page on its edge:

    GET http://127.0.0.1:4566/_l2c/pages/<stack>/    the page, pointing at the stack's local API
    GET http://127.0.0.1:4566/_l2c/pages/            the list of deployed stacks' pages

A page served here is built at each request from what is deployed at that moment (a redeploy
shows at once) and holds the local API key: that key opens the local cloud only, on loopback.
The page's origin is the edge's, and the API it calls is on the gateway's port, so the browser
makes a cross-origin request, exactly as a page on any web server calling API Gateway does.
"""

from __future__ import annotations

import html
from pathlib import Path

from l2c.cloud.session import LOCAL, CloudError, CloudSession
from l2c.local.rules import Reply
from l2c.page import PageError, render

PAGES = "pages"  # under the edge's /_l2c/
PREFIX = f"/_l2c/{PAGES}"
CLIENTS = ("apigateway", "lambda", "sagemaker")
HTML_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    # Built from what is deployed now: a cached copy could call a route that is gone.
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
]


def page_url(edge_url: str, name: str) -> str:
    return f"{edge_url.rstrip('/')}{PREFIX}/{name}/"


def cloud_session(boto_session, region: str, control_plane_url: str, api_url: str) -> CloudSession:
    """A session of the local cloud on itself, as `l2c status` would open one from outside."""
    session = CloudSession(
        boto=boto_session,
        region=region,
        account="",  # nothing a page reads is per account
        partition=boto_session.get_partition_for_region(region),
        target=LOCAL,
        execute_api_url=api_url,
        endpoints={"*": control_plane_url},
    )
    for service in CLIENTS:  # created now: boto3 makes clients safely one thread at a time only
        session.client(service)
    return session


class LocalPages:
    """The edge's handler for every path under /_l2c/pages."""

    def __init__(self, session: CloudSession, models_dir: Path | str = "models"):
        self.session = session
        self.models_dir = Path(models_dir)

    def __call__(self, request) -> Reply:
        # Imported at the first page, not with the cloud: l2c.cloud.stack brings xgboost, and
        # with it scikit-learn, seconds of a start that needs neither (l2c.local.cloud).
        from l2c.cloud import names
        from l2c.page.deployed import stack_page

        if request.method != "GET":
            return Reply(
                405, [*HTML_HEADERS, ("Allow", "GET")], _message_page("Method Not Allowed", "Pages are read with GET.")
            )
        name = request.path[len(PREFIX) :].strip("/")
        if not name:
            return Reply(200, HTML_HEADERS, self.index())
        try:
            names.check_stack_name(name)
            config, _ = stack_page(self.session, name, [self.models_dir / name], with_key=True)
            return Reply(200, HTML_HEADERS, render(config).encode())
        except (CloudError, PageError) as err:
            return Reply(404, HTML_HEADERS, _message_page(f"No page for {name}", str(err)))

    def deployed_stacks(self) -> list[str]:
        from l2c.cloud import functions, tags

        found = {
            tags.stack_of(item["tags"]) for item in functions.list_functions(self.session) if tags.is_l2c(item["tags"])
        }
        return sorted(name for name in found if name)

    def index(self) -> bytes:
        stacks = self.deployed_stacks()
        items = "".join(f'<li><a href="{PREFIX}/{html.escape(name)}/">{html.escape(name)}</a></li>' for name in stacks)
        body = f"<ul>{items}</ul>" if stacks else "<p>Nothing is deployed yet: <code>l2c deploy iris</code>.</p>"
        return _page("Prediction pages", body)


def _message_page(title: str, message: str) -> bytes:
    return _page(title, f"<p>{html.escape(message)}</p>")


def _page(title: str, body: str) -> bytes:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()
