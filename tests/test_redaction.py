"""Redaction unit tests: default scrubbing, step filters, global masks, streams, spans, replay keys.

Fast and in-process; ``test_secrets_e2e.py`` runs real agents.
"""

from __future__ import annotations

import copy
import json
import logging
import re

import pytest

from agenttrace import _config
from agenttrace._redaction import EMPTY, MARKER, Redactor, Rules
from agenttrace._scrub_patterns import describe, format_spans, is_secret_key
from agenttrace._scrub_spans import SCRUBBED_ATTRIBUTE, scrub_span
from agenttrace.replay.matching import request_key

OPENAI_KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5q"
ANTHROPIC_KEY = "sk-ant-api03-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
AT_KEY = "at_live_4f1c2b9e7d"


def http_event(request: dict, response: dict | None = None, error: dict | None = None) -> dict:
    event = {"seq": 1, "kind": "http", "step": None, "span_id": "00", "client": "httpx"}
    event["request"] = {"method": "POST", "headers": [], "body": None, **request}
    if response is not None:
        event["response"] = {"status": 200, "headers": [], **response}
    if error is not None:
        event["error"] = error
    event["redacted"] = []
    return event


def dumped(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- what counts as a secret --------------------------------------------------------------------

SECRET_KEYS = [
    "password",
    "passwd",
    "user_password",
    "PASSWORD",
    "Passphrase",
    "pwd",
    "mysql_pwd",
    "client_secret",
    "aws_secret_access_key",
    "Authorization",
    "Proxy-Authorization",
    "x-auth-token",
    "oauth_token",
    "credentials",
    "private_key",
    "privateKey",
    "api_key",
    "apiKey",
    "X-Api-Key",
    "api-key",
    "x-goog-api-key",
    "access_token",
    "accessToken",
    "refresh_token",
    "id_token",
    "bearer_token",
    "token",
    "x-token",
    "session",
    "sessionid",
    "session_id",
    "Cookie",
    "Set-Cookie",
    "csrf_token",
    "X-CSRF-Token",
    "xsrf",
    "csrfmiddlewaretoken",
    "jwt",
    "ssn",
    "social_security_number",
    "credit_card",
    "creditCardNumber",
    "card_number",
    "cvv",
    "ocp-apim-subscription-key",
    "x-amz-security-token",
    "AWS_ACCESS_KEY_ID",
]

ORDINARY_KEYS = [
    "author",
    "authors",
    "author_id",
    "max_tokens",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "tokens",
    "token_type",
    "page_token",
    "next_page_token",
    "content",
    "role",
    "model",
    "messages",
    "keyword",
    "monkey",
    "passenger",
    "description",
    "classname",
    "www-authenticate",
    "key",
    "cache_key",
    "idempotency-key",
    "compass",
    "bypass",
    "x-request-id",
    "user-agent",
    "content-type",
    "openai-organization",
    "x-ratelimit-remaining-tokens",
    "anthropic-ratelimit-tokens-limit",
    "logprobs",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_looking_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ORDINARY_KEYS)
def test_ordinary_keys_are_left_alone(key):
    assert not is_secret_key(key)


SECRET_VALUES = [
    OPENAI_KEY,
    ANTHROPIC_KEY,
    "sk-" + "a" * 48,
    AT_KEY,
    "at_test_abcd",
    AWS_KEY,
    "ASIAY34FZKBOKMUTVV7A",
    "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"[:35],
    "ghp_" + "x" * 36,
    "github_pat_" + "A1" * 20,
    "xoxb-123456789012-abcdefghijkl",
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "rk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    JWT,
]


@pytest.mark.parametrize("secret", SECRET_VALUES)
def test_secret_formats_are_found_inside_text(secret):
    text = f"the value is {secret}, see?"
    assert [text[a:b] for a, b in format_spans(text)] == [secret]


@pytest.mark.parametrize(
    "text, secret",
    [
        ("Authorization: Bearer abcdefghijklmnop0123456789", "abcdefghijklmnop0123456789"),
        ("bearer abcdefghijklmnop0123456789==", "abcdefghijklmnop0123456789=="),
        ("postgres://app:s3cr3t-pw@db.internal:5432/x", "s3cr3t-pw"),
    ],
)
def test_formats_with_context_scrub_only_the_secret(text, secret):
    assert [text[a:b] for a, b in format_spans(text)] == [secret]


@pytest.mark.parametrize(
    "text",
    [
        "the task-force-of-many-engineers-and-more met",  # "sk-" inside a word
        "Bearer bonds are a kind of security",  # the word bearer in prose
        "sk-short",
        "my password is hunter2",
        "AKIAIOSFODNN7EXAMPLEX",  # too long to be an access key id
        "https://example.com/a@b",
    ],
)
def test_ordinary_text_has_no_secret_format(text):
    assert format_spans(text) == []


def test_documented_list_names_every_category():
    doc = describe()
    for word in ("password", "secret", "auth", "api key", "token", "session", "cookie", "csrf"):
        assert word in doc
    for word in ("sk-", "AKIA", "JWT", "Bearer", "at_live_"):
        assert word in doc


# -- events ---------------------------------------------------------------------------------------


def test_credential_headers_keep_scheme_and_cookie_names():
    event = http_event(
        {
            "url": "https://x.test/",
            "headers": [
                ["Authorization", "Bearer tok-123"],
                ["Proxy-Authorization", "Basic dXNlcjpwYXNz"],
                ["Cookie", "a=1; sessionid=xyz"],
                ["X-Api-Key", "k1"],
                ["x-goog-api-key", "k2"],
                ["anthropic-version", "2023-06-01"],
                ["X-Trace", f"id {OPENAI_KEY}"],
            ],
        },
        {
            "headers": [
                ["Set-Cookie", "sid=abc; Path=/; HttpOnly"],
                ["Location", "/cb?code=1&token=t0k"],
            ]
        },
    )
    out = Redactor().event(event, EMPTY)
    assert out["request"]["headers"] == [
        ["Authorization", f"Bearer {MARKER}"],
        ["Proxy-Authorization", f"Basic {MARKER}"],
        ["Cookie", f"a={MARKER}; sessionid={MARKER}"],
        ["X-Api-Key", MARKER],
        ["x-goog-api-key", MARKER],
        ["anthropic-version", "2023-06-01"],
        ["X-Trace", f"id {MARKER}"],
    ]
    assert out["response"]["headers"] == [
        ["Set-Cookie", f"sid={MARKER}; Path=/; HttpOnly"],
        ["Location", f"/cb?code=1&token={MARKER}"],
    ]
    assert {
        "request.headers.authorization",
        "request.headers.cookie",
        "request.headers.x-trace",
        "response.headers.set-cookie",
        "response.headers.location.query.token",
    } <= set(out["redacted"])


def test_url_query_userinfo_and_path_params():
    url = f"https://bob:pw-123@h.test/a;jsessionid=abc?city=Paris&api_key=k-1&q={OPENAI_KEY}#x"
    out = Redactor().event(http_event({"url": url}, {}), EMPTY)
    assert out["request"]["url"] == (
        f"https://bob:{MARKER}@h.test/a;jsessionid={MARKER}"
        f"?city=Paris&api_key={MARKER}&q={MARKER}#x"
    )
    assert {"request.url", "request.url.query.api_key", "request.url.query.q"} <= set(
        out["redacted"]
    )


def test_untouched_url_keeps_its_exact_encoding():
    url = "https://h.test/search?q=a%20b&city=S%C3%A3o+Paulo"
    out = Redactor().event(http_event({"url": url}, {}), EMPTY)
    assert out["request"]["url"] == url


def test_json_fields_by_key_not_by_content():
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "my password is hunter2, keep it safe"}],
        "password": "hunter2",
        "pin": {"credentials": {"user": "bob"}},
        "auth": {"type": "basic", "token": "t"},
        "ssn": 123456789,
        "session_id": None,
        "api_key": "",
        "is_authenticated": True,
        "note": f"use {ANTHROPIC_KEY} for that",
    }
    out = Redactor().event(
        http_event({"url": "https://x.test/", "body": {"json": body}}, {}), EMPTY
    )
    scrubbed = out["request"]["body"]["json"]
    assert scrubbed["messages"][0]["content"] == "my password is hunter2, keep it safe"
    assert scrubbed["password"] == MARKER
    assert scrubbed["pin"] == {"credentials": MARKER}
    assert scrubbed["auth"] == MARKER
    assert scrubbed["ssn"] == MARKER
    assert scrubbed["session_id"] is None and scrubbed["api_key"] == ""
    assert scrubbed["is_authenticated"] is True  # a boolean reveals nothing
    assert scrubbed["note"] == f"use {MARKER} for that"
    assert scrubbed["max_tokens"] == 10
    assert set(out["redacted"]) == {
        "request.body.password",
        "request.body.pin.credentials",
        "request.body.auth",
        "request.body.ssn",
        "request.body.note",
    }


def test_tool_schemas_and_logprobs_are_content():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "login",
                "parameters": {
                    "type": "object",
                    "properties": {"password": {"type": "string"}, "token": {"type": "string"}},
                    "required": ["password"],
                },
            },
        }
    ]
    logprobs = {"content": [{"token": "Hello", "logprob": -0.1, "top_logprobs": []}]}
    event = http_event(
        {"url": "https://x.test/", "body": {"json": {"tools": tools}}},
        {"body": {"json": {"choices": [{"logprobs": logprobs}]}}},
    )
    out = Redactor().event(event, EMPTY)
    assert out["request"]["body"]["json"]["tools"] == tools
    assert out["response"]["body"]["json"]["choices"][0]["logprobs"] == logprobs
    assert out["redacted"] == []


def test_form_and_text_bodies():
    form = http_event(
        {
            "url": "https://x.test/token",
            "headers": [["Content-Type", "application/x-www-form-urlencoded"]],
            "body": {"text": "grant_type=password&username=bob&password=hunter2&client_secret=s"},
        },
        {
            "headers": [["Content-Type", "text/plain"]],
            "body": {"text": 'ok {"access_token": "at-1", "expires_in": 3600} refresh_token=rt-2'},
        },
    )
    out = Redactor().event(form, EMPTY)
    assert out["request"]["body"]["text"] == (
        f"grant_type=password&username=bob&password={MARKER}&client_secret={MARKER}"
    )
    assert out["response"]["body"]["text"] == (
        f'ok {{"access_token": "{MARKER}", "expires_in": 3600}} refresh_token={MARKER}'
    )


def test_key_value_pairs_inside_strings_are_fields_even_escaped():
    # An API echoing the request, an error quoting it, a model's tool arguments: a field named
    # like a secret is scrubbed at any depth of quoting, unlike a secret word in prose.
    echoed = {"body": '{"api_key": "k-1", "city": "Paris"}', "note": "the password is long"}
    text = 'data: {"delta": {"arguments": "{\\"password\\": \\"x1\\"}"}}\n\n'
    out = Redactor().event(
        http_event(
            {"url": "https://x.test/"},
            {
                "body": {"json": echoed},
                "headers": [["Link", "<https://x.test/p?token=t9>; rel=next"]],
            },
        ),
        EMPTY,
    )
    assert out["response"]["body"]["json"] == {
        "body": f'{{"api_key": "{MARKER}", "city": "Paris"}}',
        "note": "the password is long",
    }
    assert out["response"]["headers"] == [["Link", f"<https://x.test/p?token={MARKER}>; rel=next"]]
    stream = Redactor().event(
        http_event({"url": "https://x.test/"}, {"chunks": [{"at_ms": 1.0, "text": text}]}), EMPTY
    )
    assert stream["response"]["chunks"][0]["text"] == text.replace("x1", MARKER)


def test_error_message_args_and_attributes():
    error = {
        "type": "HTTPError",
        "module": "x",
        "message": f"401 for https://x.test/v1?api_key=k-9 with Bearer {'z' * 20}",
        "args": [f"key {OPENAI_KEY}"],
        "attrs": {"url": "/v1?token=abc", "password": "p"},
    }
    out = Redactor().event(http_event({"url": "https://x.test/"}, error=error), EMPTY)
    assert (
        out["error"]["message"]
        == f"401 for https://x.test/v1?api_key={MARKER} with Bearer {MARKER}"
    )
    assert out["error"]["args"] == [f"key {MARKER}"]
    assert out["error"]["attrs"] == {"url": f"/v1?token={MARKER}", "password": MARKER}
    assert out["error"]["type"] == "HTTPError"


def test_redaction_never_mutates_its_input_and_is_idempotent():
    event = http_event(
        {
            "url": "https://x.test/?token=abc",
            "headers": [["Authorization", "Bearer x"]],
            "body": {"json": {"password": "p", "nested": [{"apiKey": "k"}]}},
        },
        {
            "chunks": [
                {"at_ms": 1.0, "text": f"data: {OPENAI_KEY[:12]}"},
                {"at_ms": 2.0, "text": OPENAI_KEY[12:]},
            ]
        },
    )
    before = copy.deepcopy(event)
    redactor = Redactor(["hunter\\d"])
    once = redactor.event(event, EMPTY)
    assert event == before
    twice = redactor.event(once, EMPTY)
    assert twice == once
    assert dumped(once).count(MARKER) == 5


def test_nothing_to_scrub_returns_the_same_body_objects():
    body = {"json": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}
    event = http_event({"url": "https://x.test/", "body": body}, {"body": {"json": {"ok": True}}})
    out = Redactor().event(event, EMPTY)
    assert out["request"]["body"] is body  # no copy when there is nothing to scrub
    assert out["redacted"] == []


# -- streams ------------------------------------------------------------------------------------


def chunked(*texts: str) -> list[dict]:
    return [{"at_ms": float(i * 10), "text": t} for i, t in enumerate(texts)]


def test_secret_split_across_chunks_keeps_chunk_count_and_timing():
    chunks = chunked(
        'data: {"k": "' + OPENAI_KEY[:10], OPENAI_KEY[10:] + '"}\n\n', "data: [DONE]\n\n"
    )
    out = Redactor().event(http_event({"url": "https://x.test/"}, {"chunks": chunks}), EMPTY)
    got = out["response"]["chunks"]
    assert [c["at_ms"] for c in got] == [0.0, 10.0, 20.0]
    assert [c["text"] for c in got] == ['data: {"k": "' + MARKER, '"}\n\n', "data: [DONE]\n\n"]
    assert OPENAI_KEY[10:] not in dumped(got)
    assert set(out["redacted"]) == {"response.chunks[0]", "response.chunks[1]"}


def test_secret_spanning_three_chunks_and_a_key_split_from_its_value():
    chunks = chunked('{"pass', 'word": "hun', "ter", '2", "x": 1}')
    out = Redactor().event(http_event({"url": "https://x.test/"}, {"chunks": chunks}), EMPTY)
    got = [c["text"] for c in out["response"]["chunks"]]
    assert got == ['{"pass', f'word": "{MARKER}', "", '", "x": 1}']
    assert "hunter2" not in "".join(got)


def test_binary_chunks_split_inside_a_character():
    data = f"café {AWS_KEY} café".encode()
    cut = data.index("é".encode()) + 1  # inside the two-byte é
    import base64

    chunks = [
        {"at_ms": 0.0, "base64": base64.b64encode(data[:cut]).decode()},
        {"at_ms": 5.0, "base64": base64.b64encode(data[cut:]).decode()},
    ]
    out = Redactor().event(http_event({"url": "https://x.test/"}, {"chunks": chunks}), EMPTY)
    got = out["response"]["chunks"]
    assert len(got) == 2 and got[0] == chunks[0]
    restored = base64.b64decode(got[0]["base64"]) + (
        got[1]["text"].encode() if "text" in got[1] else base64.b64decode(got[1]["base64"])
    )
    assert restored.decode() == f"café {MARKER} café"


def test_masks_and_callables_across_chunks():
    chunks = chunked("order ACME-12", "3456 shipped")
    event = http_event({"url": "https://x.test/"}, {"chunks": chunks})
    by_regex = Redactor([r"ACME-\d{6}"]).event(event, EMPTY)
    assert [c["text"] for c in by_regex["response"]["chunks"]] == [f"order {MARKER}", " shipped"]
    by_callable = Redactor(lambda s: s.replace("ACME-123456", "<order>")).event(event, EMPTY)
    assert [c["text"] for c in by_callable["response"]["chunks"]] == ["order <order>", " shipped"]


# -- global masks and step filters ----------------------------------------------------------------


def test_global_masks_apply_to_every_string():
    event = http_event(
        {
            "url": "https://x.test/u/ACME-000001?ref=ACME-000002",
            "headers": [["X-Order", "ACME-000003"]],
            "body": {"json": {"note": "ACME-000004", "list": ["ACME-000005"]}},
        },
        {"body": {"text": "ACME-000006"}},
        error={"type": "E", "module": "m", "message": "failed ACME-000007"},
    )
    out = Redactor([r"ACME-\d{6}"]).event(event, EMPTY)
    assert not re.search(r"ACME-\d", dumped(out))
    assert dumped(out).count(MARKER) == 7


def test_callable_mask_that_fails_redacts_whole_strings(caplog):
    def broken(text: str) -> str:
        raise RuntimeError("bug in user code")

    with caplog.at_level(logging.ERROR, logger="agenttrace"):
        out = Redactor(broken).event(
            http_event({"url": "https://x.test/", "body": {"json": {"a": "b"}}}, {}), EMPTY
        )
    assert out["request"]["body"]["json"] == {"a": MARKER}


def test_step_filter_fields_everywhere_and_regexes():
    rules = Rules.parse(["user_id", r"order-\d+"])
    event = http_event(
        {
            "url": "https://x.test/?user_id=42&ref=order-7",
            "headers": [["User-Id", "42"]],
            "body": {"json": {"profile": {"USER_ID": 42, "name": "Ada"}}},
        },
        {"chunks": chunked('data: {"user_id": 42, "ok": true}\n\n')},
    )
    out = Redactor().event(event, rules)
    text = dumped(out)
    assert "42" not in text.replace('"status": 200', "") and "order-7" not in text
    assert out["request"]["body"]["json"]["profile"]["name"] == "Ada"
    assert (
        out["response"]["chunks"][0]["text"] == f'data: {{"user_id": "{MARKER}", "ok": true}}\n\n'
    )


def test_step_filter_callable_dropping_or_failing_keeps_a_stub():
    event = http_event(
        {"url": "https://x.test/?a=1", "body": {"json": {"q": 1}}}, {"body": {"json": 1}}
    )
    for spec in (lambda e: None, lambda e: 1 / 0):
        rules = Rules.parse(spec)
        out = Redactor().event(event, rules)
        assert out["dropped"] is True and out["redacted"] == ["*"]
        live, _ = Redactor().request(event["request"], rules)
        assert request_key(live) == request_key(out["request"])


# -- replay matching ----------------------------------------------------------------------------


def live_request(token: str, secret: str) -> dict:
    return {
        "method": "POST",
        "url": f"https://x.test/v1/search?access_token={token}&city=Paris",
        "headers": [["Authorization", f"Bearer {token}"], ["Content-Type", "application/json"]],
        "body": {"json": {"query": "weather", "api_key": secret, "hint": f"key sk-{secret * 4}"}},
    }


@pytest.mark.parametrize("rules", [EMPTY, Rules.parse(["query"]), Rules.parse([r"weat\w+"])])
def test_changed_secrets_still_match_their_recording(rules):
    redactor = Redactor(["hunter2"])
    recorded = redactor.event(http_event(live_request("tok-run-1", "aaaa1111bbbb")), rules)
    replayed, _ = redactor.request(live_request("tok-run-2", "cccc2222dddd"), rules)
    assert request_key(replayed) == request_key(recorded["request"])
    # …while a real change is still a different call
    other = live_request("tok-run-2", "cccc2222dddd")
    other["body"]["json"]["city"] = "Rome"
    changed, _ = redactor.request(other, rules)
    assert request_key(changed) != request_key(recorded["request"])


# -- step payloads ------------------------------------------------------------------------------


def test_payloads_scrub_keys_formats_and_object_reprs():
    class Config:
        def __repr__(self) -> str:
            return "Config(api_key='k-123', password=\"p\", region='eu')"

    value = {
        "question": "is my password safe?",
        "creds": {"password": "p"},
        "key": AWS_KEY,
        "cfg": Config(),
    }
    out, paths = Redactor().payload(value, EMPTY)
    assert out["question"] == "is my password safe?"
    assert out["creds"] == {"password": MARKER} and out["key"] == MARKER
    assert out["cfg"] == f"Config(api_key='{MARKER}', password=\"{MARKER}\", region='eu')"
    assert set(paths) == {"creds.password", "key", "cfg"}


def test_payload_that_cannot_be_walked_is_dropped_not_raised():
    loop: list = []
    loop.append(loop)
    out, paths = Redactor().payload(loop, EMPTY)
    assert out == MARKER and paths == ["*"]


def test_clean_payload_is_returned_as_is():
    value = {"city": "Paris", "days": [1, 2]}
    out, paths = Redactor().payload(value, EMPTY)
    assert out is value and paths == []


# -- scrub_keep -------------------------------------------------------------------------------


def test_scrub_keep_turns_default_scrubbing_off_for_one_key(monkeypatch, caplog):
    monkeypatch.setenv("AGENTTRACE_SCRUB_KEEP", "Session_ID, x-api-key")
    settings = _config.resolve({})
    assert settings.scrub_keep == ("session_id", "x-api-key")
    with caplog.at_level(logging.WARNING, logger="agenttrace"):
        redactor = Redactor.from_settings(settings)
    assert "session_id, x-api-key" in caplog.text and "AGENTTRACE_SCRUB_KEEP" in caplog.text
    event = http_event(
        {
            "url": "https://x.test/?session_id=s1&token=t1",
            "headers": [["X-Api-Key", OPENAI_KEY]],
            "body": {"json": {"session_id": "s-2", "password": "p", "sessionId": "s3"}},
        }
    )
    out = Redactor.from_settings(settings).event(event, EMPTY)
    assert out["request"]["url"] == f"https://x.test/?session_id=s1&token={MARKER}"
    assert out["request"]["headers"] == [["X-Api-Key", OPENAI_KEY]]  # kept means kept whole
    assert out["request"]["body"]["json"] == {
        "session_id": "s-2",
        "password": MARKER,
        "sessionId": MARKER,
    }
    assert redactor.keep == {"session_id", "x-api-key"}


def test_scrub_keep_still_honours_masks_and_step_filters():
    redactor = Redactor([r"s-\d"], keep=["session_id"])
    out, _ = redactor.payload({"session_id": "s-1"}, EMPTY)
    assert out == {"session_id": MARKER}
    out, _ = Redactor(keep=["session_id"]).payload({"session_id": "x"}, Rules.parse(["session_id"]))
    assert out == {"session_id": MARKER}


def test_scrub_keep_config_errors_name_the_key(monkeypatch):
    with pytest.raises(_config.ConfigError, match="scrub_keep"):
        _config.resolve({"scrub_keep": [1, 2]})


# -- spans ------------------------------------------------------------------------------------


@pytest.fixture
def finished_span():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    def make(attributes: dict, error: str | None = None):
        span = tracer.start_span("GET", attributes=attributes)
        if error:
            span.record_exception(ValueError(error))
            span.set_status(Status(StatusCode.ERROR, f"ValueError: {error}"))
        span.end()
        return exporter.get_finished_spans()[-1]

    return make


def test_scrub_span_rebuilds_only_what_needs_it(finished_span):
    span = finished_span(
        {
            "url.full": "https://x.test/a?api_key=k1&city=Paris",
            "http.url": "https://x.test/a?token=t1",
            "http.request.header.authorization": ("Bearer t",),
            "http.request.method": "GET",
            "http.response.status_code": 200,
            "agenttrace.event": '{"already": "redacted"}',
        },
        error=f"bad key {OPENAI_KEY}",
    )
    clean = scrub_span(span, Redactor())
    attrs = dict(clean.attributes)
    assert attrs["url.full"] == f"https://x.test/a?api_key={MARKER}&city=Paris"
    assert attrs["http.url"] == f"https://x.test/a?token={MARKER}"
    assert attrs["http.request.header.authorization"] == (MARKER,)
    assert attrs["http.response.status_code"] == 200
    assert attrs["agenttrace.event"] == '{"already": "redacted"}'
    assert set(attrs[SCRUBBED_ATTRIBUTE]) == {
        "url.full",
        "http.url",
        "http.request.header.authorization",
    }
    assert clean.status.description == f"ValueError: bad key {MARKER}"
    assert OPENAI_KEY not in clean.events[0].attributes["exception.message"]
    assert OPENAI_KEY not in clean.events[0].attributes["exception.stacktrace"]
    assert clean.context == span.context and clean.start_time == span.start_time
    assert clean.dropped_attributes == span.dropped_attributes

    plain = finished_span({"url.full": "https://x.test/a?city=Paris", "http.request.method": "GET"})
    assert scrub_span(plain, Redactor()) is plain


def test_scrubbed_span_still_encodes_as_otlp(finished_span):
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    span = scrub_span(
        finished_span({"url.full": "https://x.test/?token=abc"}, error="x"), Redactor()
    )
    payload = encode_spans([span]).SerializeToString()
    assert b"abc" not in payload and MARKER.encode() in payload


def test_compressed_upload_is_stored_decoded_and_scrubbed():
    import base64
    import gzip

    def upload(password: str) -> dict:
        raw = gzip.compress(json.dumps({"password": password, "city": "Oslo"}).encode())
        return {
            "method": "POST",
            "url": "https://x.test/echo",
            "headers": [["Content-Encoding", "gzip"], ["Content-Type", "application/json"]],
            "body": {"base64": base64.b64encode(raw).decode()},
        }

    recorded = Redactor().event(http_event(upload("pw-1")), EMPTY)
    assert recorded["request"]["body"]["json"] == {"password": MARKER, "city": "Oslo"}
    assert recorded["request"]["body"]["decoded"] == "gzip"
    live, _ = Redactor().request(upload("pw-2"), EMPTY)
    assert request_key(live) == request_key(recorded["request"])


def test_short_values_with_only_a_step_filter_field_are_filtered():
    rules = Rules.parse(["user_id"])
    out, _ = Redactor().payload({"user_id": 42}, rules)
    assert out == {"user_id": MARKER}
    out, _ = Redactor().payload("user_id=42", rules)
    assert out == f"user_id={MARKER}"
    event = http_event({"url": "https://x.test/"}, {"body": {"text": "user-id=7"}})
    assert Redactor().event(event, rules)["response"]["body"]["text"] == f"user-id={MARKER}"


@pytest.mark.parametrize(
    "text", [*SECRET_VALUES, *(f"{k}=x" for k in SECRET_KEYS), "Bearer " + "a" * 20]
)
def test_the_quick_check_never_waves_a_secret_through(text):
    from agenttrace._scrub_patterns import suspicious

    assert suspicious(text)
    assert Redactor().text(text) != text
