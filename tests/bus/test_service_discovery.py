"""Discovery answers built from registry records (no NATS): an endpoint per function with its
subject, queue group and production schemas, stats from the tallies, lists cut to one message."""

from __future__ import annotations

import json

from nats.micro.service import ServiceInfo, ServicePing, ServiceStats

from bus import subjects
from bus.service_discovery import (
    Instance,
    Tallies,
    endpoint_of,
    info_answer,
    ping_answer,
    stats_answer,
    stats_of,
)
from schemas.errors import InvalidInput
from schemas.functions import FunctionRecord, FunctionSchema, MonitorConfig, Revision

INSTANCE = Instance(id="w1", version="0.1.0", description="a worker", metadata={"role": "worker"})
IN = {"type": "object"}


def record(ct: str = "team", ft: str = "123456789") -> FunctionRecord:
    return FunctionRecord(
        collection_topic=ct,
        service=ft,
        name="hello",
        description="",
        monitor_config=MonitorConfig(),
        created=1,
        modified=1,
        latest_revision=2,
        aliases={"production": 1, "staging": 2},
    )


def revision(number: int = 1) -> Revision:
    return Revision(
        number=number,
        created=1,
        runtime="python",
        handler="index.handler",
        timeout=1000,
        read_only_fs=True,
        env_vars=[],
        size="256MB",
        memory_mb=256,
        schema=FunctionSchema(input=IN),
        bundle="sha",
        assets=[],
    )


def test_an_endpoint_is_the_functions_subject_queue_group_and_production_schemas() -> None:
    endpoint = endpoint_of(record(), revision())
    assert endpoint.name == "team-123456789"
    assert endpoint.subject == "ms.compute.team.function.123456789"
    assert endpoint.queue_group == subjects.WORKER_QUEUE
    meta = endpoint.metadata
    assert json.loads(meta["input_schema"]) == IN
    assert "output_schema" not in meta
    assert (meta["revision"], meta["latest_revision"], meta["runtime"]) == ("1", "2", "python")
    assert json.loads(meta["aliases"]) == {"production": 1, "staging": 2}
    assert meta["async_subject"] == "ms.compute.team.function.123456789.async"
    assert "revision" not in endpoint_of(record(), None).metadata


def test_the_answers_read_back_with_nats_py() -> None:
    endpoint = endpoint_of(record(), revision())
    assert ServicePing.from_dict(json.loads(ping_answer(INSTANCE))).name == "computebus"
    info = ServiceInfo.from_dict(json.loads(info_answer(INSTANCE, [endpoint], 1 << 20)))
    assert info.endpoints[0].subject == endpoint.subject
    assert info.type == "io.nats.micro.v1.info_response"
    tallies = Tallies(lambda ct, ft: object())
    tallies.count(("team", "123456789"), 30, None)
    tallies.count(("team", "123456789"), 10, InvalidInput("payload does not match"))
    stats = [stats_of(endpoint, tallies.of(("team", "123456789")))]
    read = ServiceStats.from_dict(
        json.loads(stats_answer(INSTANCE, "2024-05-01T12:00:00.000000Z", stats, 1 << 20))
    )
    (one,) = read.endpoints
    assert (one.num_requests, one.num_errors, one.processing_time) == (2, 1, 40)
    assert one.average_processing_time == 20
    assert one.last_error == "400:payload does not match"


def test_tallies_count_only_known_functions_and_forget_deleted_ones() -> None:
    known = {("team", "123456789")}
    tallies = Tallies(lambda ct, ft: True if (ct, ft) in known else None)
    tallies.count(("team", "hello"), 5, None)  # a made-up subject: nothing kept
    assert tallies.of(("team", "hello")) is None
    tallies.count(("team", "123456789"), 5, None)
    assert tallies.of(("team", "123456789")) is not None
    tallies.forget("team", "123456789")
    assert tallies.of(("team", "123456789")) is None


def test_a_list_too_long_for_one_message_is_cut_and_says_so() -> None:
    endpoints = [endpoint_of(record(ft=f"{i:09d}"), revision()) for i in range(50)]
    answer = json.loads(info_answer(INSTANCE, endpoints, 4096))
    assert 0 < len(answer["endpoints"]) < 50
    assert answer["metadata"]["endpoints_total"] == "50"
    assert answer["metadata"]["endpoints_listed"] == str(len(answer["endpoints"]))
    whole = json.loads(info_answer(INSTANCE, endpoints, 1 << 20))
    assert len(whole["endpoints"]) == 50 and "endpoints_total" not in whole["metadata"]
