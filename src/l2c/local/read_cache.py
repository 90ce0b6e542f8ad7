"""Repeated control-plane reads answered from memory until moto counts a change (:mod:`l2c.local.change_count`).

A redeploy still shows at once, while steady traffic costs no control-plane round trips (each is
~6 ms of this process's GIL).
"""

from __future__ import annotations

import json
import threading

from l2c.local.change_count import READ_PREFIXES, ChangeCount


def cache_reads(boto_session, changes: ChangeCount) -> None:
    """Make every client later created from ``boto_session`` answer repeated reads from memory.

    A read (Describe/List/Get/Head, not streamed, not CloudWatch Logs) with the same
    parameters is answered with what it returned before, for as long as ``changes`` has not
    moved since that call was sent. Errors are not kept. The cache sits in front of botocore's
    serialising and signing, which cost more than the answer once it is known. Answers are
    shared between callers (copying them cost a tenth of the gateway's time): read them only.
    """
    store: dict = {}
    lock = threading.Lock()

    class CachedReads:
        def _make_api_call(self, operation_name, api_params):
            key = _read_key(self, operation_name, api_params)
            if key is None:
                return super()._make_api_call(operation_name, api_params)
            seen = changes.value
            with lock:
                kept = store.get(key)
            if kept is not None and kept[0] == seen:
                return kept[1]
            answer = super()._make_api_call(operation_name, api_params)
            with lock:
                if len(store) > 1024:
                    store.clear()
                store[key] = (seen, answer)
            return answer

        def get_paginator(self, operation_name):
            # botocore re-reads its paginator models from disk on every call; a paginator is reusable.
            made = self.__dict__.setdefault("_l2c_paginators", {})
            if operation_name not in made:
                made[operation_name] = super().get_paginator(operation_name)
            return made[operation_name]

    def add_cache(base_classes, **_):
        base_classes.insert(0, CachedReads)

    boto_session.events.register("creating-client-class", add_cache)


def _read_key(client, operation_name: str, api_params: dict) -> tuple | None:
    service = client.meta.service_model.service_name
    if not operation_name.startswith(READ_PREFIXES) or service == "logs":
        return None
    if client.meta.service_model.operation_model(operation_name).has_streaming_output:
        return None
    params = json.dumps(api_params, sort_keys=True, default=repr)
    return client.meta.endpoint_url, client.meta.region_name, service, operation_name, params
