"""The baseline: the "EC2 + Flask" way of serving the tutorial's model.

A joblib-loaded scikit-learn wrapper (``XGBClassifier``) behind Flask's development server,
parsing CSV with string splits and answering with ``predict_proba``: what most "deploy your
model with Flask" tutorials do. Kept deliberately plain; the benchmark compares against it.

    python -m bench.naive_flask_server --model models/iris/xgboost_classifier.joblib --port 8090
"""

from __future__ import annotations

import argparse
import logging

import joblib
import numpy as np
from flask import Flask, Response, request


def create_app(model_path: str) -> Flask:
    app = Flask(__name__)
    model = joblib.load(model_path)

    @app.get("/ping")
    def ping():
        return Response(status=200)

    @app.post("/invocations")
    def invocations():
        lines = request.get_data(as_text=True).strip().splitlines()
        rows = np.array([[float(value) for value in line.split(",")] for line in lines])
        probabilities = model.predict_proba(rows)
        text = "\n".join(",".join(str(p) for p in row) for row in probabilities.tolist()) + "\n"
        return Response(text, status=200, mimetype="text/csv")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a joblib dump of the scikit-learn wrapper")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    create_app(args.model).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
