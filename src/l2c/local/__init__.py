"""The embedded local cloud: control plane, inference runtime and execute-api gateway on 127.0.0.1."""
