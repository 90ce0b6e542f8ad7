"""One Lambda execution environment: imports the deployed handler once, then serves invocations.

Started by the local gateway as ``python -I lambda_runner.py TASK_ROOT HANDLER PARENT_PID`` with
the function's environment and nothing else, in a folder holding the unzipped deployment package;
like Lambda's Python runtime it keeps module state (a boto3 client made at import time, say)
between invocations. Standard library only: nothing of l2c is importable here, as on AWS.

Protocol: a ``{"ready": true}`` line once the handler is imported (or failed to import), then
one JSON request per line on stdin, one JSON reply per line, both on the original stdout.
File descriptor 1 is then pointed at stderr, so whatever the handler prints goes to the log
stream (as on Lambda) and cannot corrupt a reply. After each invocation a marker line on stderr
tells the gateway where that invocation's log ends.

It exits as soon as the cloud's process is gone, however that ended (SIGKILL too): an idle
runner sees end of file on stdin, and a busy one (a handler sleeping for minutes) is stopped by
a thread that notices it has a new parent. No execution environment outlives its cloud.
"""

import importlib
import json
import os
import sys
import threading
import time
import traceback

LOG_END_MARKER = "\x00l2c-invocation-end"
PARENT_CHECK_S = 0.5


class LambdaContext:
    def __init__(self, request: dict):
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.invoked_function_arn = request.get("function_arn", "")
        self.aws_request_id = request.get("request_id", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = request.get("deadline_ms", time.time() * 1000 + 3000)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


def load_handler(handler: str):
    module_name, _, function_name = handler.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


def error_reply(error_type: str, err: BaseException, skip_frames: int = 0) -> dict:
    """Lambda's error object: the Python runtime lists the handler's frames, not its own."""
    frames = traceback.extract_tb(err.__traceback__)[skip_frames:]
    return {
        "ok": False,
        "errorType": error_type,
        "errorMessage": str(err),
        "stackTrace": traceback.format_list(frames),
    }


def invoke(handler, request: dict) -> dict:
    try:
        result = handler(request["event"], LambdaContext(request))
    except Exception as err:  # the handler's failure is the invocation's result, not ours
        traceback.print_exc()
        return error_reply(type(err).__name__, err, skip_frames=1)
    try:
        json.dumps(result)
    except (TypeError, ValueError) as err:
        return error_reply("Runtime.MarshalError", err)
    return {"ok": True, "result": result}


def exit_with_parent(parent_pid: int) -> None:
    # An orphan is adopted by another process (init, or a subreaper): its parent pid changes.
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def main() -> None:
    task_root, handler_name = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        threading.Thread(target=exit_with_parent, args=(int(sys.argv[3]),), daemon=True).start()
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, task_root)
    try:
        handler, init_error = load_handler(handler_name), None
    except Exception as err:
        traceback.print_exc()
        handler, init_error = None, error_reply("Runtime.ImportModuleError", err)
    # Initialisation is over (as Lambda's init phase, it does not count against the timeout).
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        reply = init_error or invoke(handler, request)
        sys.stderr.write(f"{LOG_END_MARKER} {request.get('request_id', '')}\n")
        sys.stderr.flush()
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
