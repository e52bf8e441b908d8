"""The Redis broker's data layout: key names per channel and the record codec (no I/O).

Every key of one channel shares the hash tag ``{channel}``, so a channel's scripts touch one
cluster slot:

============================  ==================================================
key                           holds
============================  ==================================================
``<prefix>:{<ch>}:m``         hash: ``epoch``, ``top`` (last committed offset), ``dirty``
``<prefix>:{<ch>}:l``         the writer lease (the holder's node id, with a TTL)
``<prefix>:{<ch>}:w``         set while another node wants the lease
``<prefix>:{<ch>}:s``         stream of the newest messages, entry ids = offsets
``<prefix>:{<ch>}:i:<key>``   an idempotency key: pending claim, then the record
``<prefix>:p:<ch>``           the Pub/Sub channel of the fan-out
============================  ==================================================

A record is one message as stored in the stream and PUBLISHed: a JSON header line
``[node, offset, epoch, ts, attrs, idempotency_key]``, a newline, then the data. A PUBLISHed
batch is its records, each prefixed with its 4-byte big-endian length.
"""

from __future__ import annotations

import struct

import orjson

from wagerwire.core.messages import Message

__all__ = [
    "ChannelKeys",
    "batch_of",
    "decode_record",
    "decode_records",
    "encode_batch",
    "encode_record",
    "fanout_prefix",
    "frame_record",
]

_LEN = struct.Struct(">I")


def fanout_prefix(prefix: str) -> str:
    """The Pub/Sub channel name of every channel, less the channel's own name."""
    return f"{prefix}:p:"


class ChannelKeys:
    """The Redis keys of one channel."""

    __slots__ = ("fanout", "lease", "meta", "stream", "tag", "wanted")

    def __init__(self, prefix: str, channel: str) -> None:
        tag = self.tag = f"{prefix}:{{{channel}}}"
        self.meta = f"{tag}:m"
        self.lease = f"{tag}:l"
        self.stream = f"{tag}:s"
        self.wanted = f"{tag}:w"
        self.fanout = fanout_prefix(prefix) + channel

    def idempotency(self, key: str) -> str:
        """The key under which ``key``'s claim and then its committed record are kept."""
        return f"{self.tag}:i:{key}"


def encode_record(node: str, message: Message) -> bytes:
    """One message as stored in the stream and PUBLISHed: a JSON header line, then data."""
    attrs = dict(message.attrs) if message.attrs is not None else None
    header = orjson.dumps(
        [node, message.offset, message.epoch, message.ts, attrs, message.idempotency_key]
    )
    return header + b"\n" + message.data


def decode_record(channel: str, record: bytes) -> tuple[str, Message]:
    """The node that committed ``record``, and its message."""
    cut = record.index(b"\n")
    node, offset, epoch, ts, attrs, key = orjson.loads(record[:cut])
    return node, Message(channel, offset, epoch, ts, record[cut + 1:], attrs, key)


def encode_batch(node: str, messages: list[Message]) -> bytes:
    """The PUBLISHed batch of ``messages``: each record after its 4-byte length."""
    parts: list[bytes] = []
    pack = _LEN.pack
    for message in messages:
        record = encode_record(node, message)
        parts += (pack(len(record)), record)
    return b"".join(parts)


def frame_record(record: bytes) -> bytes:
    """``record`` with its length prefix, ready to be joined into a PUBLISHed batch."""
    return _LEN.pack(len(record)) + record


def batch_of(node: str, payload: bytes) -> bool:
    """Whether the PUBLISHed batch ``payload`` was committed by ``node``, without decoding it.

    One commit PUBLISHes one batch, all of one node, so the first record's header tells.
    """
    mark = b'["' + node.encode() + b'",'
    return payload.startswith(mark, _LEN.size)


def decode_records(channel: str, payload: bytes) -> list[tuple[str, Message]]:
    """The records of one PUBLISHed batch (each prefixed with its 4-byte length).

    Raises:
        ValueError, struct.error, orjson.JSONDecodeError: ``payload`` is not a batch.
    """
    out = []
    pos = 0
    end = len(payload)
    while pos < end:
        (size,) = _LEN.unpack_from(payload, pos)
        pos += 4
        out.append(decode_record(channel, payload[pos:pos + size]))
        pos += size
    return out
