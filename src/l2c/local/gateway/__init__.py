"""The execute-api data plane of the local cloud: what ``https://{api}.execute-api...`` does on AWS.

moto stores REST APIs but does not serve Lambda proxy routes, so this gateway does, reading the
API from the control plane on every request (a redeploy shows at once). One module per job, in
the order a request meets them:

- :mod:`.server`: the HTTP front end (uvicorn), bounding what one client may cost before any
  routing: head sizes (431), slow and idle connections (408), the number of connections, the body (413);
- :mod:`.service`: ``Gateway``, one request through the steps below, and TestInvokeMethod
  (the method's integration without key or stage, with API Gateway's execution log, :mod:`.trace`);
- :mod:`.quotas`: API Gateway's size and time quotas on one request;
- :mod:`.routing`: ``/{stage}/{path}`` (or ``/restapis/{api}/{stage}/_user_request_/{path}``, or a
  ``{api}.execute-api.*`` Host header) -> REST API, stage, resource and method; no route ->
  403 ``Missing Authentication Token``, as AWS answers;
- :mod:`.admission`: the stage's method throttling, the API key and its usage plans (403, 429);
- :mod:`.lambda_proxy`: Lambda proxy integrations (``AWS_PROXY``): the function's permission,
  the REST proxy event, and the function's answer checked and turned into HTTP (502, 504, 500);
- :mod:`.mock`: MOCK integrations (what the console's "Enable CORS" makes for OPTIONS);
- :mod:`.responses`: the gateway's own errors, shaped by the API's gateway responses
  (:mod:`.templates`: the static values and ``$context`` variables both use);
- :mod:`.messages`: the request, route, response and error the modules hand each other.

What differs from AWS: routes come from the API's current resources, not from the snapshot the
stage's deployment froze; authorizers, request validation, VTL beyond
static templates and HTTP/AWS (non-proxy) integrations are not served.
"""
