"""The inference runtime: a SageMaker-compatible server for the XGBoost models l2c trains.

Two faces over one engine (see docs/serving.md):
- the container face, ``GET /ping`` and ``POST /invocations`` like SageMaker's XGBoost container
  (``l2c serve MODEL``; :func:`l2c.serving.server.start_container_in_thread`);
- the Runtime-API face, ``POST /endpoints/{name}/invocations`` like boto3's ``sagemaker-runtime``
  (:func:`l2c.serving.server.serve_runtime`, :func:`l2c.serving.server.start_runtime_in_thread`).
"""
