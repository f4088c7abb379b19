"""The message-broker kinds without a broker: config errors that name the fix, message keys that
survive a redelivery, Kafka's commit arithmetic, dead-letter fields, and lazy client imports."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from coldbrew.errors import InvalidRequest
from coldbrew.integrations.triggers import brokerwire, kafka, kinds, mqtt, nats_jetstream, rabbitmq
from coldbrew.integrations.triggers.base import SINKS, SOURCES, Message, source_kind

kinds.load()


@pytest.mark.parametrize(
    ("kind", "raw", "complaint"),
    [
        pytest.param("nats", {"stream": "S", "subject": "s.in"}, "durable", id="nats-no-durable"),
        pytest.param(
            "nats",
            {"stream": "a.b", "subject": "s", "durable": "d"},
            "stream",
            id="nats-dot-in-stream-name",
        ),
        pytest.param(
            "nats",
            {"stream": "S", "subject": "orders.>", "durable": "d",
             "dead_letter_subject": "orders.dead"},
            "falls under subject",
            id="nats-dead-letters-read-again",
        ),
        pytest.param("rabbitmq", {"url": "amqp://x/"}, "queue", id="rabbit-no-queue"),
        pytest.param(
            "rabbitmq",
            {"queue": "q", "dead_letter_queue": "d", "dead_letter_exchange": "x"},
            "choose one",
            id="rabbit-two-dead-letter-places",
        ),
        pytest.param("rabbitmq", {"queue": "q", "url": "redis://x"}, "url", id="rabbit-bad-url"),
        pytest.param("mqtt", {"topic": "a/#"}, "client_id", id="mqtt-no-client-id"),
        pytest.param("mqtt", {"topic": "a/b#", "client_id": "c"}, "whole level", id="mqtt-bad-#"),
        pytest.param("mqtt", {"topic": "a/#/b", "client_id": "c"}, "last level",
                     id="mqtt-#-inside"),
        pytest.param(
            "mqtt",
            {"topic": "a/+/x", "client_id": "c", "dead_letter_topic": "a/dead/x"},
            "matches topic",
            id="mqtt-dead-letters-read-again",
        ),
        pytest.param("kafka", {"topics": ["t"]}, "group_id", id="kafka-no-group"),
        pytest.param("kafka", {"topics": ["a b"], "group_id": "g"}, "topic names",
                     id="kafka-bad-topic"),
        pytest.param(
            "kafka",
            {"topics": ["t"], "group_id": "g", "dead_letter_topic": "t"},
            "must not be one of topics",
            id="kafka-dead-letters-read-again",
        ),
        pytest.param("nats", {"stream": "S", "subject": "s", "durable": "d", "typo": 1}, "typo",
                     id="unknown-field"),
    ],
)  # fmt: skip
def test_config_mistakes_are_400s_that_say_what_to_fix(
    kind: str, raw: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(InvalidRequest, match=complaint):
        source_kind(kind).validate(raw)


def test_a_missing_client_library_is_a_400_that_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aio_pika" else real(name, *a)
    )
    with pytest.raises(InvalidRequest, match=r"pip install 'coldbrew\[triggers\]'"):
        source_kind("rabbitmq").validate({"queue": "q"})


def test_every_broker_kind_is_registered_and_no_client_is_imported() -> None:
    # Redis too: its client is ~25 MB of a gateway that has no Redis trigger
    assert {"nats", "rabbitmq", "mqtt", "kafka"} <= set(SOURCES)
    assert {"nats", "rabbitmq", "mqtt"} <= set(SINKS)
    code = (
        "import sys\n"
        "import coldbrew.platform, coldbrew.api.app, coldbrew.cli.serve\n"
        "from coldbrew.integrations.triggers import kinds, base\n"
        "kinds.load()\n"
        "base.source_kind('nats').validate({'stream': 'S', 'subject': 's', 'durable': 'd'})\n"
        "base.source_kind('redis').validate({'stream': 's'})\n"
        "loaded = [m for m in ('nats', 'aio_pika', 'aiormq', 'aiomqtt', 'paho', 'aiokafka',"
        " 'redis')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("orders.in", "orders.in", True),
        ("orders.in", "orders.dead", False),
        ("orders.*", "orders.dead", True),
        ("orders.>", "orders.x.y", True),
        ("orders.*", "orders.x.y", False),
        ("orders", "orders.dead", False),
        ("*.in", "orders.dead", False),
    ],
)
def test_nats_subject_overlap(a: str, b: str, overlap: bool) -> None:
    assert nats_jetstream._overlaps(a, b) is overlap
    assert nats_jetstream._overlaps(b, a) is overlap


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a/b/c", True),
        ("a/#", "a", True),  # the spec: "sport/#" also matches "sport"
        ("a/#", "b", False),
        ("+/+/c", "a/b/c", True),
        ("a/b", "a/c", False),
    ],
)
def test_mqtt_topic_matching(topic_filter: str, topic: str, matches: bool) -> None:
    assert mqtt.topic_matches(topic_filter, topic) is matches


def _nats_msg(seq: int, headers: dict[str, str] | None = None) -> Any:
    return SimpleNamespace(
        headers=headers, metadata=SimpleNamespace(sequence=SimpleNamespace(stream=seq))
    )


def test_nats_key_is_the_publisher_s_msg_id_else_the_stream_sequence() -> None:
    assert nats_jetstream.message_key("ORDERS", _nats_msg(42)) == "ORDERS:42"
    assert nats_jetstream.message_key("ORDERS", _nats_msg(42, {"Nats-Msg-Id": "o-1"})) == "id:o-1"


def _amqp(message_id: str | None, routing_key: str, body: bytes) -> Any:
    return SimpleNamespace(
        message_id=message_id, exchange="", routing_key=routing_key, body=body, delivery_tag=7
    )


def test_rabbitmq_key_is_the_message_id_else_a_hash_of_where_and_what() -> None:
    assert rabbitmq.message_key(_amqp("m-1", "q", b"{}")) == "id:m-1"
    no_id = rabbitmq.message_key(_amqp(None, "q", b'{"a": 1}'))
    expected = hashlib.sha256(b"\0q\0" + b'{"a": 1}').hexdigest()
    assert no_id == f"sha256:{expected}"
    redelivered = SimpleNamespace(**{**vars(_amqp(None, "q", b'{"a": 1}')), "delivery_tag": 99})
    assert rabbitmq.message_key(redelivered) == no_id  # the delivery tag is not part of it
    assert rabbitmq.message_key(_amqp(None, "other", b'{"a": 1}')) != no_id


def test_mqtt_key_is_topic_and_message_id_property_else_topic_and_payload_hash() -> None:
    props = mqtt.publish_properties({"message-id": "reading-9"})
    assert mqtt.message_key("plant/1", b"{}", props, "message-id") == "plant/1|id:reading-9"
    digest = hashlib.sha256(b"{}").hexdigest()
    assert mqtt.message_key("plant/1", b"{}", None, "message-id") == f"plant/1|sha256:{digest}"


def test_kafka_key_is_topic_partition_offset() -> None:
    assert kafka.message_key("orders", 3, 1017) == "orders/3/1017"


@pytest.mark.parametrize(
    ("fetched", "settled", "due"),
    [
        pytest.param([0, 1, 2], [], {}, id="nothing-settled-nothing-due"),
        pytest.param([0, 1, 2], [0, 1, 2], {("t", 0): 3}, id="all-settled-past-the-last"),
        pytest.param([0, 1, 2, 3], [0, 1, 3], {("t", 0): 2}, id="stops-at-the-lowest-open"),
        pytest.param([5, 6], [6], {}, id="a-gap-at-the-start-blocks"),
        pytest.param([10, 11], [10], {("t", 0): 11}, id="resumed-offsets"),
    ],
)
def test_kafka_commits_only_up_to_the_lowest_unsettled_offset(
    fetched: list[int], settled: list[int], due: dict[Any, int]
) -> None:
    book = kafka.OffsetBook()
    for offset in fetched:
        book.fetched(("t", 0), offset)
    for offset in settled:
        book.settle(("t", 0), offset)
    assert book.due() == due


def test_kafka_positions_move_forward_only_and_revoked_partitions_are_forgotten() -> None:
    book = kafka.OffsetBook()
    for offset in range(3):
        book.fetched(("t", 0), offset)
        book.fetched(("t", 1), offset)
    for offset in range(3):
        book.settle(("t", 0), offset)
    assert book.due() == {("t", 0): 3}
    book.committed({("t", 0): 3})
    assert book.due() == {}  # nothing moved since
    book.forget([("t", 1)])  # a rebalance took partition 1: its next owner re-reads 0..2
    book.settle(("t", 1), 0)
    assert book.due() == {}


def test_dead_letter_fields_carry_the_error_within_a_header_s_size() -> None:
    error = {"type": "handler_error", "message": "boom", "traceback": "line\n" * 5000}
    fields = brokerwire.error_fields("trg-1", "orders:7", error)
    assert fields["coldbrew-error-type"] == "handler_error"
    assert fields["coldbrew-message-key"] == "orders:7"
    assert len(fields["coldbrew-error"]) <= brokerwire.MAX_ERROR_BYTES
    assert orjson.loads(fields["coldbrew-error"])["message"] == "boom"
    message = Message("k", {"data": "AAE="}, 1.0)  # the runner's copy of a non-JSON payload
    assert orjson.loads(brokerwire.dead_letter_payload(message)) == {"data": "AAE="}


def test_amqp_ids_fit_a_short_string() -> None:
    assert brokerwire.short_id("id:m-1") == "id:m-1"
    long_key = "id:" + "x" * 255  # a publisher's 255-byte message_id, prefixed
    short = brokerwire.short_id(long_key)
    assert len(short) <= 255 and short == brokerwire.short_id(long_key)


def test_errors_never_show_a_broker_password() -> None:
    assert brokerwire.redact("amqp://guest:s3cret@host:5672/") == "amqp://guest:***@host:5672/"
    assert brokerwire.redact("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
