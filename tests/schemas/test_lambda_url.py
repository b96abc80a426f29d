"""The Lambda function-URL event of a request, and the HTTP answer of a handler's result."""

from __future__ import annotations

import base64

import pytest

from schemas.errors import InvalidOutput
from schemas.lambda_url import HttpRequest, http_answer, is_text, lambda_event


def request(**changes: object) -> HttpRequest:
    fields: dict[str, object] = {
        "method": "POST",
        "path": "/hooks/github/push",
        "query": b"x=1&x=2&y=",
        "headers": [
            (b"host", b"api:8080"),
            (b"user-agent", b"GitHub-Hookshot"),
            (b"x-many", b"a"),
            (b"x-many", b"b"),
            (b"cookie", b"a=1; b=2"),
            (b"content-type", b"application/json; charset=utf-8"),
        ],
        "body": b'{"ok": true}',
        "source_ip": "10.0.0.1",
        "request_id": "inv-1",
        "now_ms": 1_700_000_000_000,
        **changes,
    }
    return HttpRequest(**fields)  # type: ignore[arg-type]


def test_the_event_has_the_function_url_shape() -> None:
    event = lambda_event(request())
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/hooks/github/push"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["headers"]["x-many"] == "a,b" and "cookie" not in event["headers"]
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["requestContext"]["http"] == {
        "method": "POST",
        "path": "/hooks/github/push",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.1",
        "userAgent": "GitHub-Hookshot",
    }
    assert event["requestContext"]["domainName"] == "api:8080"
    assert event["requestContext"]["timeEpoch"] == 1_700_000_000_000
    assert event["requestContext"]["time"] == "14/Nov/2023:22:13:20 +0000"
    assert event["body"] == '{"ok": true}' and event["isBase64Encoded"] is False


def test_a_binary_body_is_base64_and_an_empty_one_absent() -> None:
    event = lambda_event(request(headers=[(b"content-type", b"image/png")], body=b"\x89PNG"))
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x89PNG"
    bare = lambda_event(request(query=b"", body=b""))
    assert "body" not in bare and bare["isBase64Encoded"] is False
    assert "queryStringParameters" not in bare


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        ("text/plain", b"hi", True),
        ("application/json", b"{}", True),
        ("application/vnd.api+json", b"{}", True),
        ("application/x-www-form-urlencoded", b"a=1", True),
        ("text/plain", b"\xff", False),  # not UTF-8
        ("application/octet-stream", b"hi", False),
        ("", b"hi", False),
    ],
)
def test_what_counts_as_text(content_type: str, body: bytes, text: bool) -> None:
    assert is_text(content_type, body) is text


def test_a_plain_result_is_json_with_200() -> None:
    answer = http_answer({"message": "hi"})
    assert (answer.status, answer.body) == (200, b'{"message":"hi"}')
    assert answer.headers == [("content-type", "application/json")]
    assert http_answer([1, 2]).body == b"[1,2]" and http_answer(None).body == b"null"


def test_a_status_code_result_is_the_response() -> None:
    answer = http_answer(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-N": 3, "Content-Length": "99"},
            "body": base64.b64encode(b"\x00raw").decode(),
            "isBase64Encoded": True,
            "cookies": ["a=1"],
        }
    )
    assert answer.status == 201 and answer.body == b"\x00raw"
    assert answer.headers == [("content-type", "text/plain"), ("x-n", "3"), ("set-cookie", "a=1")]
    assert http_answer({"statusCode": 204}).body == b""
    assert http_answer({"statusCode": 200, "body": {"a": 1}}).body == b'{"a":1}'


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": 99},
        {"statusCode": "200"},
        {"statusCode": True},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "headers": {"bad name": "v"}},
        {"statusCode": 200, "headers": {"x": "a\r\nInjected: 1"}},
        {"statusCode": 200, "headers": {"x": "\u2603"}},
        {"statusCode": 200, "headers": {"x": None}},
        {"statusCode": 200, "cookies": "a=1"},
        {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True},
    ],
)
def test_a_malformed_response_is_invalid_output(result: dict[str, object]) -> None:
    with pytest.raises(InvalidOutput):
        http_answer(result)
