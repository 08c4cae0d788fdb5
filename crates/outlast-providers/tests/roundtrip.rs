//! Property: a canonical request survives canonical -> native -> canonical for every protocol,
//! keeping everything that protocol can express: system prompt, the order and text of turns,
//! tool calls (names and arguments) and their results, max tokens, temperature, top_p, stop.

// Test crate: helpers panic on purpose, a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use outlast_core::ChatRequest;
use outlast_providers::{anthropic, gemini};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One atomic item of a conversation, independent of how a protocol groups them.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    System(String),
    User(String),
    Assistant(String),
    Call { name: String, args: Value },
    Result { name: String, content: String },
}

#[derive(Debug, Clone, PartialEq)]
struct Norm {
    items: Vec<Item>,
    max_tokens: Option<u64>,
    temperature: Option<i64>,
    top_p: Option<i64>,
    stop: Vec<String>,
    tools: Vec<String>,
}

fn milli(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_f64)
        .map(|f| (f * 1000.0).round() as i64)
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Flatten a canonical (OpenAI-shaped) request.
fn norm_canonical(req: &ChatRequest) -> Norm {
    let v = serde_json::to_value(req).unwrap();
    let mut names = std::collections::HashMap::new();
    let mut items = Vec::new();
    for m in v["messages"].as_array().unwrap() {
        match m["role"].as_str().unwrap() {
            "system" | "developer" => items.push(Item::System(text_of(&m["content"]))),
            "user" => items.push(Item::User(text_of(&m["content"]))),
            "assistant" => {
                let t = text_of(&m["content"]);
                if !t.is_empty() {
                    items.push(Item::Assistant(t));
                }
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    let name = c["function"]["name"].as_str().unwrap().to_string();
                    names.insert(c["id"].as_str().unwrap().to_string(), name.clone());
                    let args: Value =
                        serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
                    items.push(Item::Call { name, args });
                }
            }
            "tool" => {
                let name = names
                    .get(m["tool_call_id"].as_str().unwrap())
                    .cloned()
                    .unwrap_or_default();
                items.push(Item::Result {
                    name,
                    content: text_of(&m["content"]),
                });
            }
            other => panic!("role {other}"),
        }
    }
    let stop = match &v["stop"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
        _ => vec![],
    };
    let mut tools: Vec<String> = v["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    tools.sort();
    Norm {
        items,
        max_tokens: v["max_completion_tokens"]
            .as_u64()
            .or(v["max_tokens"].as_u64()),
        temperature: milli(v.get("temperature")),
        top_p: milli(v.get("top_p")),
        stop,
        tools,
    }
}

/// Flatten a native Gemini request (the gateway has no Gemini inbound API, so the reverse
/// direction is read straight off the wire JSON).
fn norm_gemini(native: &Value) -> Norm {
    let mut items = Vec::new();
    if let Some(si) = native.get("systemInstruction") {
        items.push(Item::System(text_of(&si["parts"])));
    }
    for c in native["contents"].as_array().unwrap() {
        let role = c["role"].as_str().unwrap_or("user");
        for p in c["parts"].as_array().unwrap() {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                items.push(if role == "model" {
                    Item::Assistant(t.to_string())
                } else {
                    Item::User(t.to_string())
                });
            } else if let Some(f) = p.get("functionCall") {
                items.push(Item::Call {
                    name: f["name"].as_str().unwrap().to_string(),
                    args: f["args"].clone(),
                });
            } else if let Some(f) = p.get("functionResponse") {
                let content = match &f["response"]["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                items.push(Item::Result {
                    name: f["name"].as_str().unwrap().to_string(),
                    content,
                });
            }
        }
    }
    let g = &native["generationConfig"];
    let mut tools: Vec<String> = native["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| {
            t["functionDeclarations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    tools.sort();
    Norm {
        items,
        max_tokens: g["maxOutputTokens"].as_u64(),
        temperature: milli(g.get("temperature")),
        top_p: milli(g.get("topP")),
        stop: g["stopSequences"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_string())
            .collect(),
        tools,
    }
}

const TOOLS: [&str; 3] = ["get_weather", "lookup", "book_table"];

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "umlaut-ü",
        "名字",
        "quote\"d",
    ])
    .prop_map(str::to_string)
}

fn sentence() -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 1..6).prop_map(|w| w.join(" "))
}

/// One exchange: a user turn, then either a text answer, or tool calls, their results and a
/// text answer.
fn exchange() -> impl Strategy<Value = Vec<Value>> {
    let calls = prop::collection::vec(
        (
            prop::sample::select(TOOLS.to_vec()),
            prop::option::of(sentence()),
            sentence(),
        ),
        1..3,
    );
    (sentence(), prop::option::of(calls), sentence(), any::<u32>()).prop_map(|(user, calls, answer, salt)| {
        let mut out = vec![json!({"role": "user", "content": user})];
        if let Some(calls) = calls {
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, arg, _))| {
                    let args = match arg {
                        Some(a) => json!({"q": a}),
                        None => json!({}),
                    };
                    json!({"id": format!("call_{salt}_{i}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}})
                })
                .collect();
            out.push(json!({"role": "assistant", "content": null, "tool_calls": tool_calls}));
            for (i, (_, _, result)) in calls.iter().enumerate() {
                out.push(json!({"role": "tool", "tool_call_id": format!("call_{salt}_{i}"), "content": result}));
            }
        }
        out.push(json!({"role": "assistant", "content": answer}));
        out
    })
}

fn request() -> impl Strategy<Value = ChatRequest> {
    (
        prop::option::of(sentence()),
        prop::collection::vec(exchange(), 0..3),
        sentence(),
        1u64..4096,
        prop::option::of(0u32..=10),
        prop::option::of(1u32..=10),
        prop::collection::vec(word(), 0..4),
    )
        .prop_map(|(system, exchanges, last, max_tokens, temp, top_p, stop)| {
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(json!({"role": "system", "content": s}));
            }
            messages.extend(exchanges.into_iter().flatten());
            messages.push(json!({"role": "user", "content": last}));
            let tools: Vec<Value> = TOOLS
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t, "description": "A tool.", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}))
                .collect();
            let mut req = json!({"model": "m", "messages": messages, "max_tokens": max_tokens, "tools": tools});
            if let Some(t) = temp {
                req["temperature"] = json!(f64::from(t) / 10.0);
            }
            if let Some(p) = top_p {
                req["top_p"] = json!(f64::from(p) / 10.0);
            }
            if !stop.is_empty() {
                req["stop"] = json!(stop);
            }
            serde_json::from_value(req).unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn openai_round_trip_is_exact(req in request()) {
        let wire = serde_json::to_vec(&req).unwrap();
        let back: ChatRequest = serde_json::from_slice(&wire).unwrap();
        prop_assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&req).unwrap());
    }

    #[test]
    fn anthropic_round_trip_keeps_what_it_can_express(req in request()) {
        let native = anthropic::convert::to_native(&req, "t/m").unwrap();
        let wire = serde_json::to_vec(&native).unwrap();
        let parsed = anthropic::inbound::parse(&wire).unwrap();
        let back = anthropic::inbound::to_canonical(parsed).unwrap();
        prop_assert_eq!(norm_canonical(&back), norm_canonical(&req));
    }

    #[test]
    fn gemini_round_trip_keeps_what_it_can_express(req in request()) {
        let native = gemini::convert::to_native(&req, "t/m").unwrap();
        let wire = serde_json::to_value(&native).unwrap();
        prop_assert_eq!(norm_gemini(&wire), norm_canonical(&req));
    }
}
