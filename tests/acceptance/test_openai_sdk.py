"""Acceptance: the official `openai` Python SDK against the real `outlast` gateway and simulator."""

from __future__ import annotations

import json
import math
import signal
import threading
import time

import httpx
import openai
import pytest

from conftest import Gateway, Sim, tcp_open, wait_until

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}

HELLO = [{"role": "user", "content": "Say hello."}]


def _raw_chat(client: openai.OpenAI, **kw):
    """A non-streaming chat completion plus the HTTP response it came in."""
    raw = client.chat.completions.with_raw_response.create(**kw)
    return raw.parse(), raw.headers


# --------------------------------------------------------------------------- 1. chat


def test_chat_completion_through_route(client, primary, backup):
    before = backup.stats()["requests"]
    completion, headers = _raw_chat(client, model="chat", messages=HELLO)

    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content, "the answer text is empty"
    assert "[primary]" in choice.message.content
    assert choice.finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.id

    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    assert headers.get("x-outlast-target") == "primary/gpt-4o-mini"
    assert headers.get("x-outlast-attempts") == "1"
    assert backup.stats()["requests"] == before, "backup must not be asked when primary answers"


def test_chat_completion_direct_target(client):
    completion, headers = _raw_chat(client, model="backup/gpt-4o-mini", messages=HELLO)
    assert "[backup]" in completion.choices[0].message.content
    assert headers.get("x-outlast-target") == "backup/gpt-4o-mini"
    assert headers.get("x-outlast-attempts") == "1"


# --------------------------------------------------------------------------- 2. streaming


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="chat", messages=HELLO, stream=True, stream_options={"include_usage": True})
    text = ""
    finish_reasons = []
    usage_chunks = []
    chunks = 0
    for chunk in stream:
        chunks += 1
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage_chunks.append((chunks, chunk))
        for choice in chunk.choices:
            if choice.delta.content:
                text += choice.delta.content
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)

    assert text.strip(), "streamed deltas concatenate to empty text"
    assert "[primary]" in text
    assert finish_reasons == ["stop"]
    assert len(usage_chunks) == 1, f"expected exactly one usage chunk, got {len(usage_chunks)}"
    position, usage_chunk = usage_chunks[0]
    assert position == chunks, "the usage chunk must be the last one"
    assert usage_chunk.choices == []
    u = usage_chunk.usage
    assert u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_streaming_headers(client):
    with client.chat.completions.with_streaming_response.create(
            model="chat", messages=HELLO, stream=True) as resp:
        assert resp.headers.get("x-outlast-target") == "primary/gpt-4o-mini"
        assert resp.headers.get("x-outlast-attempts") == "1"
        assert resp.headers.get("content-type", "").startswith("text/event-stream")
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert "[primary]" in text


# --------------------------------------------------------------------------- 3. tools


def test_tool_call_round_trip(client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model="chat", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls, "expected a tool call"
    call = calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert isinstance(args, dict)
    assert "city" in args
    assert isinstance(args["city"], str)

    messages.append({
        "role": "assistant",
        "content": choice.message.content,
        "tool_calls": [{
            "id": call.id,
            "type": "function",
            "function": {"name": call.function.name, "arguments": call.function.arguments},
        }],
    })
    messages.append({"role": "tool", "tool_call_id": call.id,
                     "content": json.dumps({"temp_c": 18, "sky": "clear"})})
    second = client.chat.completions.create(model="chat", messages=messages, tools=[WEATHER_TOOL])
    answer = second.choices[0]
    assert answer.finish_reason == "stop"
    assert not answer.message.tool_calls
    assert answer.message.content and "[primary]" in answer.message.content


def test_tool_choice_none_gives_text(client):
    completion = client.chat.completions.create(
        model="chat", messages=HELLO, tools=[WEATHER_TOOL], tool_choice="none")
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert choice.message.content


def test_streaming_tool_call(client):
    stream = client.chat.completions.create(
        model="chat", stream=True, tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather in Oslo?"}])
    calls: dict[int, dict] = {}
    finish_reasons = []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function is not None:
                    slot["name"] += tc.function.name or ""
                    slot["arguments"] += tc.function.arguments or ""

    assert finish_reasons == ["tool_calls"]
    assert sorted(calls) == list(range(len(calls))) and calls, f"tool call indexes: {sorted(calls)}"
    first = calls[0]
    assert first["id"]
    assert first["name"] == "get_weather"
    args = json.loads(first["arguments"])
    assert isinstance(args, dict) and isinstance(args.get("city"), str)


# --------------------------------------------------------------------------- 4. embeddings


def test_embeddings_float_with_dimensions(client):
    resp = client.embeddings.create(model="primary/text-embedding-3-small", input=["a", "b"],
                                    dimensions=8, encoding_format="float")
    assert resp.object == "list"
    assert [d.index for d in resp.data] == [0, 1]
    for d in resp.data:
        assert len(d.embedding) == 8
        assert all(isinstance(x, float) and math.isfinite(x) for x in d.embedding)
    assert resp.data[0].embedding != resp.data[1].embedding, "different inputs, same vector"
    assert resp.usage.prompt_tokens > 0


def test_embeddings_sdk_default_base64(client):
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    raw = client.embeddings.with_raw_response.create(
        model="primary/text-embedding-3-small", input=["a", "b"], dimensions=8)
    sent = json.loads(raw.http_request.content)
    assert sent["encoding_format"] == "base64"
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str), \
        "the gateway must pass base64 embeddings through as strings"
    resp = raw.parse()
    assert len(resp.data) == 2
    vectors = [list(d.embedding) for d in resp.data]
    for v in vectors:
        assert len(v) == 8
        assert all(math.isfinite(x) for x in v)

    floats = client.embeddings.create(model="primary/text-embedding-3-small", input=["a", "b"],
                                      dimensions=8, encoding_format="float")
    for got, want in zip(vectors, floats.data):
        assert got == pytest.approx(want.embedding, rel=1e-5, abs=1e-6)


def test_embeddings_default_dimensions(client):
    resp = client.embeddings.create(model="primary/text-embedding-3-small", input="hello")
    assert len(resp.data) == 1
    assert len(resp.data[0].embedding) == 1536


# --------------------------------------------------------------------------- 5. failover


def _failover(client, primary: Sim, backup: Sim, primary_should_see: bool):
    p_before, b_before = primary.stats()["requests"], backup.stats()["answered"]
    completion, headers = _raw_chat(client, model="chat", messages=HELLO)
    assert "[backup]" in completion.choices[0].message.content
    assert "[primary]" not in completion.choices[0].message.content
    assert headers.get("x-outlast-target") == "backup/gpt-4o-mini"
    assert headers.get("x-outlast-attempts") == "2"
    assert backup.stats()["answered"] == b_before + 1
    if primary_should_see:
        assert primary.stats()["requests"] == p_before + 1
    return completion


def test_failover_when_primary_hard_down(client, primary, backup):
    primary.patch(down=True)
    wait_until(lambda: not tcp_open(primary.port), 5, "primary to close its listener")
    _failover(client, primary, backup, primary_should_see=False)


def test_failover_on_primary_500(client, primary, backup):
    primary.patch(error_rate=1.0, error_status=500)
    _failover(client, primary, backup, primary_should_see=True)


def test_failover_on_primary_429(client, primary, backup):
    primary.patch(error_rate=1.0, error_status=429)
    _failover(client, primary, backup, primary_should_see=True)


def test_failover_streaming_when_primary_hard_down(client, primary, backup):
    primary.patch(down=True)
    wait_until(lambda: not tcp_open(primary.port), 5, "primary to close its listener")
    with client.chat.completions.with_streaming_response.create(
            model="chat", messages=HELLO, stream=True) as resp:
        assert resp.headers.get("x-outlast-target") == "backup/gpt-4o-mini"
        assert resp.headers.get("x-outlast-attempts") == "2"
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert "[backup]" in text


def test_primary_serves_again_after_restore(client, primary):
    # The previous tests' faults were undone by the restore_faults fixture.
    completion, headers = _raw_chat(client, model="chat", messages=HELLO)
    assert headers.get("x-outlast-target") == "primary/gpt-4o-mini"
    assert "[primary]" in completion.choices[0].message.content


# --------------------------------------------------------------------------- 6. errors


def test_missing_api_key(gateway):
    c = gateway.client(api_key="unused")
    with pytest.raises(openai.AuthenticationError) as ei:
        c.chat.completions.create(model="chat", messages=HELLO,
                                  extra_headers={"Authorization": openai.Omit()})
    assert ei.value.status_code == 401
    assert "authorization" not in {k.lower() for k in ei.value.request.headers.keys()}
    # The same without the SDK, to be sure no header at all is refused.
    r = httpx.post(f"{gateway.base_url}/chat/completions",
                   json={"model": "chat", "messages": HELLO}, timeout=10)
    assert r.status_code == 401
    assert "error" in r.json()


def test_wrong_api_key(gateway):
    c = gateway.client(api_key="sk-wrong")
    with pytest.raises(openai.AuthenticationError) as ei:
        c.chat.completions.create(model="chat", messages=HELLO)
    assert ei.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        c.models.list()
    with pytest.raises(openai.AuthenticationError):
        c.embeddings.create(model="primary/text-embedding-3-small", input="x")


def test_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert ei.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nobody/gpt-4o-mini", messages=HELLO)


def test_empty_messages(client, primary):
    before = primary.stats()["requests"]
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="chat", messages=[])
    assert ei.value.status_code == 400
    assert primary.stats()["requests"] == before, "an invalid request must not reach a provider"


def test_body_too_large(client, primary):
    before = primary.stats()["requests"]
    big = "x" * (100 * 1024)
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="chat",
                                       messages=[{"role": "user", "content": big}])
    assert ei.value.status_code == 413
    assert "error" in ei.value.response.json()
    assert primary.stats()["requests"] == before


def test_context_length_exceeded_passes_through(client, primary, backup):
    primary.patch(context_window=50)
    b_before = backup.stats()["requests"]
    long_prompt = " ".join(["word"] * 400)
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="chat",
                                       messages=[{"role": "user", "content": long_prompt}])
    assert ei.value.status_code == 400
    assert ei.value.code == "context_length_exceeded"
    assert ei.value.param == "messages"
    assert backup.stats()["requests"] == b_before, "a caller fault must not fail over"


def test_all_targets_down(gateway, primary, backup):
    primary.patch(down=True)
    backup.patch(down=True)
    c = gateway.client(max_retries=0)
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as ei:
        c.chat.completions.create(model="chat", messages=HELLO)
    assert time.monotonic() - started < 10, "connection refused should fail fast"
    e = ei.value
    assert e.status_code == 503
    retry_after = e.response.headers.get("retry-after")
    assert retry_after is not None, "503 must carry Retry-After"
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert "error" in e.response.json()


# --------------------------------------------------------------------------- 7. models


def test_models_list(client):
    ids = {m.id for m in client.models.list()}
    for want in ("chat", "primary/gpt-4o-mini", "backup/gpt-4o-mini",
                 "primary/text-embedding-3-small", "backup/text-embedding-3-small"):
        assert want in ids, f"{want} missing from {sorted(ids)}"


def test_models_retrieve(client):
    m = client.models.retrieve("primary/gpt-4o-mini")
    assert m.id == "primary/gpt-4o-mini"
    assert m.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


# --------------------------------------------------------------------------- 8. shutdown


def test_graceful_shutdown_finishes_in_flight_request(start_gateway, primary):
    gw: Gateway = start_gateway("shutdown", [primary], {"chat": ["primary/gpt-4o-mini"]})
    primary.patch(latency="1500ms")
    client = gw.client(api_key="no-auth-configured")
    result: dict = {}

    def call():
        try:
            result["completion"] = client.chat.completions.create(model="chat", messages=HELLO)
        except Exception as e:  # reported by the assertions below
            result["error"] = e

    in_flight_before = primary.stats()["in_flight"]
    t = threading.Thread(target=call, daemon=True)
    started = time.monotonic()
    t.start()
    # The request is in flight once the provider holds it.
    wait_until(lambda: primary.stats()["in_flight"] > in_flight_before, 5,
               "the request to reach the provider")
    time.sleep(max(0.0, 0.3 - (time.monotonic() - started)))
    gw.proc.send_signal(signal.SIGTERM)

    t.join(timeout=15)
    assert not t.is_alive(), "the in-flight request never finished"
    assert "error" not in result, f"in-flight request failed during shutdown: {result.get('error')!r}"
    assert "[primary]" in result["completion"].choices[0].message.content
    assert time.monotonic() - started >= 1.5

    try:
        code = gw.proc.wait(timeout=10)
    except Exception:
        pytest.fail("gateway did not exit within 10 s of SIGTERM")
    assert code == 0, f"gateway exited with {code}"
