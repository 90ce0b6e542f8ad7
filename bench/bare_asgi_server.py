"""The single-row baseline: the prediction alone, on exactly the server stack `l2c serve` runs.

A bare ASGI app that reads the body, makes a one-row float32 array with a string split,
calls ``Booster.inplace_predict`` (one thread, as `l2c serve` predicts small requests) and
writes ``repr`` of each probability. No Content-Type or Accept handling, no error handling,
no container compatibility: what is left is the cost of HTTP plus XGBoost, which is the
floor `l2c serve` is measured against. The uvicorn options (httptools, uvloop, keep-alive,
no access log, worker processes) and the garbage-collector settings are `l2c serve`'s own,
imported from it, so that only the application differs.

    python -m bench.bare_asgi_server --model models/iris --port 8091 --workers 2
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import uvicorn

from l2c.artifact import load_artifact
from l2c.serving import server

MODEL_ENV = "L2C_BENCH_BARE_MODEL"
HEADERS = [(b"content-type", b"text/csv; charset=utf-8")]


def bare_app(model_path: str):
    booster = load_artifact(model_path).booster
    booster.set_param({"nthread": 1})

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == "/ping":
            answer = b""
        else:
            row = np.array(body.split(b","), dtype=np.float32).reshape(1, -1)
            predictions = booster.inplace_predict(row, validate_features=False)
            answer = ("\n".join(",".join(map(repr, line)) for line in predictions.tolist()) + "\n").encode()
        headers = [*HEADERS, (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


def app_from_env():
    """uvicorn factory for the worker processes, as `l2c serve` has its own."""
    app = bare_app(os.environ[MODEL_ENV])
    server.settle_garbage_collector()
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder, model.tar.gz or booster file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ[MODEL_ENV] = os.path.abspath(args.model)
    uvicorn.run(
        "bench.bare_asgi_server:app_from_env",
        factory=True,
        workers=args.workers,
        **server._run_options(args.host, args.port),
    )


if __name__ == "__main__":
    main()
