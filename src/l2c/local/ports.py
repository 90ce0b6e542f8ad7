"""Where the local cloud listens: loopback only, on ports that are free (or said clearly to be taken)."""

from __future__ import annotations

import socket

from l2c.cloud.session import CloudError

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """``count`` different ports nothing listens on now (the system's choice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ensure_port_free(host: str, port: int, what: str) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As the servers themselves do: connections of a previous run lingering in TIME_WAIT do not
    # make the port busy, a listening socket does.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError:
        raise CloudError(
            f"port {port} on {host} is in use, so {what} cannot listen there "
            "(another `l2c up`?); stop it or choose other ports (see `l2c up --help`)"
        ) from None
    finally:
        probe.close()
