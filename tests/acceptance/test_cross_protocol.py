"""Cross-protocol acceptance: the official openai SDK against routes whose only target speaks
Anthropic or Gemini, the official anthropic SDK against /v1/messages routed to OpenAI and
Gemini targets, and failover across protocols mid-route."""

from __future__ import annotations

import json

import anthropic
import pytest

from conftest import API_KEY, Gateway

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest", "gemini": "gemini-2.0-flash"}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "additionalProperties": False,
                   "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def sims(start_sim):
    return {p: start_sim(f"x-{p}", protocol=p) for p in ("openai", "anthropic", "gemini")}


@pytest.fixture(scope="module")
def xgw(outlast_bin, workdir, sims, request):
    routes = {f"only-{p}": [f"x-{p}/{MODELS[p]}"] for p in sims}
    routes["chain"] = [f"x-{p}/{MODELS[p]}" for p in ("openai", "anthropic", "gemini")]
    gw = Gateway(outlast_bin, workdir, "xproto", list(sims.values()), routes, api_keys=[API_KEY])
    request.addfinalizer(gw.stop)
    return gw


@pytest.fixture(autouse=True)
def reset_sims(sims):
    yield
    for s in sims.values():
        s.reset()


@pytest.mark.parametrize("protocol", ["anthropic", "gemini"])
def test_openai_sdk_chat_stream_and_tool_round_trip(xgw, protocol):
    client = xgw.client()
    model = f"only-{protocol}"
    r = client.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"}])
    assert r.choices[0].message.content.startswith(f"[x-{protocol}]")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(f"[x-{protocol}]")
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

    first = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS)
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "sample"}
    second = client.chat.completions.create(model=model, tools=TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'}])
    assert second.choices[0].finish_reason == "stop"

    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS, stream=True)
    args = {}
    finish = None
    for c in stream:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
        if c.choices and c.choices[0].finish_reason:
            finish = c.choices[0].finish_reason
    assert finish == "tool_calls"
    assert json.loads(args[0]) == {"city": "sample"}


@pytest.mark.parametrize("protocol", ["openai", "gemini"])
def test_anthropic_sdk_against_messages_endpoint(xgw, protocol):
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{xgw.port}", api_key=API_KEY, max_retries=0)
    model = f"only-{protocol}"
    msg = client.messages.create(model=model, max_tokens=64, system="Be terse.",
                                 messages=[{"role": "user", "content": "Hello"}])
    assert msg.content[0].text.startswith(f"[x-{protocol}]")
    assert msg.stop_reason == "end_turn"

    with client.messages.stream(model=model, max_tokens=64,
                                messages=[{"role": "user", "content": "Hello"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text.startswith(f"[x-{protocol}]")
    assert final.usage.output_tokens > 0

    tools = [{"name": "get_weather", "description": "Weather",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    first = client.messages.create(model=model, max_tokens=64, tools=tools,
                                   messages=[{"role": "user", "content": "Weather?"}])
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.input == {"city": "sample"}
    second = client.messages.create(model=model, max_tokens=64, tools=tools, messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}]}])
    assert second.stop_reason == "end_turn"

    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])


def test_failover_openai_down_anthropic_overloaded_gemini_answers(xgw, sims):
    sims["openai"].patch(down=True)
    sims["anthropic"].patch(error_rate=1.0, error_status=529)
    client = xgw.client()
    raw = client.chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "Hello"}])
    assert raw.headers["x-outlast-target"] == "x-gemini/gemini-2.0-flash"
    assert raw.parse().choices[0].message.content.startswith("[x-gemini]")
    chunks = list(client.chat.completions.create(
        model="chain", messages=[{"role": "user", "content": "Hello"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("[x-gemini]")
    ac = anthropic.Anthropic(base_url=f"http://127.0.0.1:{xgw.port}", api_key=API_KEY, max_retries=0)
    msg = ac.messages.create(model="chain", max_tokens=32, messages=[{"role": "user", "content": "Hi"}])
    assert msg.content[0].text.startswith("[x-gemini]")
