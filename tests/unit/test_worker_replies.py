"""A batch's answers leave the worker in one write; an output that is not JSON fails its job
alone."""

from __future__ import annotations

import socket

from coldbrew.runtime import protocol
from coldbrew.runtime.worker import make_channel


def _read(sock: socket.socket) -> dict[str, object]:
    header = sock.recv(protocol.HEADER.size, socket.MSG_WAITALL)
    (length,) = protocol.HEADER.unpack(header)
    return protocol.decode(sock.recv(length, socket.MSG_WAITALL))


def test_a_batch_answers_in_one_write_and_a_bad_output_fails_alone() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        channel = make_channel(ours.detach())
        channel.send_many(
            [
                {"t": "done", "id": "a", "output": {"y": 1}, "share": 2},
                {"t": "done", "id": "b", "output": {1, 2}, "share": 2},
            ]
        )
        first, second = _read(theirs), _read(theirs)
        channel._reader.close()
        channel._sock.close()
        assert first == {"t": "done", "id": "a", "output": {"y": 1}, "share": 2}
        assert second["id"] == "b" and "output" not in second
        error = second["error"]
        assert isinstance(error, dict) and "not JSON" in error["message"]
