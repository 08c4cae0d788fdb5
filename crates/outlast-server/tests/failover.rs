//! Failover before the first byte on every provider fault; caller faults come back at once;
//! failures after the first byte end the stream with an error event, never `[DONE]`.

// Test crate: helpers panic on purpose, a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use outlast_sim::{Faults, SimConfig};
use serde_json::{Value, json};

async fn assert_fails_over(faults: Faults, stream: bool, extra: &str) {
    let a = sim_faults("a", faults.clone()).await;
    let b = sim("b").await;
    let gw = gateway(config(&[("a", &a), ("b", &b)], extra)).await;
    let body = if stream {
        stream_body("chat")
    } else {
        chat_body("chat")
    };
    let r = post(&client(), &gw, &body).await;
    assert_eq!(r.status(), 200, "{faults:?} stream={stream}");
    assert_eq!(
        header(&r, "x-outlast-target"),
        "b/gpt-4o-mini",
        "{faults:?}"
    );
    assert_eq!(header(&r, "x-outlast-attempts"), "2", "{faults:?}");
    let text = r.text().await.unwrap();
    assert!(text.contains("[b]"), "{text}");
    if stream {
        assert!(text.trim_end().ends_with("data: [DONE]"));
        assert!(!text.contains("\"error\""), "{text}");
    }
    assert_eq!(b.stats().answered, 1);
}

#[tokio::test]
async fn hard_down_fails_over() {
    for stream in [false, true] {
        assert_fails_over(
            Faults {
                down: true,
                ..Faults::default()
            },
            stream,
            "",
        )
        .await;
    }
}

#[tokio::test]
async fn provider_statuses_fail_over() {
    for status in [500, 502, 503, 504, 408, 429, 529] {
        for stream in [false, true] {
            assert_fails_over(
                Faults {
                    error_rate: 1.0,
                    error_status: status,
                    ..Faults::default()
                },
                stream,
                "",
            )
            .await;
        }
    }
}

#[tokio::test]
async fn rejected_credentials_fail_over_without_leaking_the_key() {
    let a = sim_with(SimConfig {
        api_key: Some("right-key".into()),
        ..SimConfig::openai("a")
    })
    .await;
    let b = sim("b").await;
    let mut cfg = config(&[("a", &a), ("b", &b)], "");
    cfg.providers[0].api_key = Some(outlast_config::Secret::new("sk-wrong-key-123"));
    let gw = gateway(cfg).await;
    let r = post(&client(), &gw, &chat_body("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-outlast-target"), "b/gpt-4o-mini");

    // With only the bad-key target, the client learns the provider rejected the gateway's key,
    // and never sees the key.
    let r = post(&client(), &gw, &chat_body("a/gpt-4o-mini")).await;
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(text.contains("credentials"), "{text}");
    assert!(
        !text.contains("sk-wrong-key-123") && !text.contains("right-key"),
        "{text}"
    );
}

#[tokio::test]
async fn slow_first_byte_fails_over() {
    let extra = "[upstream]\n";
    let _ = extra;
    let a = sim_faults(
        "a",
        Faults {
            latency: Duration::from_secs(5),
            ..Faults::default()
        },
    )
    .await;
    let b = sim("b").await;
    let mut cfg = config(&[("a", &a), ("b", &b)], "");
    cfg.upstream.first_byte_timeout = Duration::from_millis(200);
    let gw = gateway(cfg).await;
    for body in [chat_body("chat"), stream_body("chat")] {
        let r = post(&client(), &gw, &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-outlast-target"), "b/gpt-4o-mini");
    }
}

#[tokio::test]
async fn streams_that_fail_before_their_first_event_fail_over() {
    for faults in [
        Faults {
            cut_after: Some(0),
            ..Faults::default()
        },
        Faults {
            error_after: Some(0),
            ..Faults::default()
        },
    ] {
        assert_fails_over(faults, true, "").await;
    }
    // A stream that stalls before its first event is a slow first byte.
    let a = sim_faults(
        "a",
        Faults {
            stall_after: Some(0),
            ..Faults::default()
        },
    )
    .await;
    let b = sim("b").await;
    let mut cfg = config(&[("a", &a), ("b", &b)], "");
    cfg.upstream.first_byte_timeout = Duration::from_millis(200);
    let gw = gateway(cfg).await;
    let r = post(&client(), &gw, &stream_body("chat")).await;
    assert_eq!(header(&r, "x-outlast-target"), "b/gpt-4o-mini");
}

/// A provider that answers 200 with a body that is not a completion.
async fn garbage_provider(body: &'static str, content_type: &'static str) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(move || async move {
        ([(axum::http::header::CONTENT_TYPE, content_type)], body)
    });
    let listener = tokio::net::TcpListener::bind(LOCAL).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn malformed_answers_fail_over() {
    for (body, ct, stream) in [
        ("<html>oops</html>", "text/html", false),
        ("{\"id\": \"x\"}", "application/json", false),
        ("data: {not json}\n\n", "text/event-stream", true),
    ] {
        let bad = garbage_provider(body, ct).await;
        let b = sim("b").await;
        let toml = format!(
            "[[providers]]\nname = \"bad\"\nbase_url = \"http://{bad}/v1\"\n[[providers]]\nname = \"b\"\nbase_url = \"{}\"\n[[routes]]\nmodel = \"chat\"\ntargets = [\"bad/m\", \"b/m\"]\n",
            b.base_url()
        );
        let gw = gateway(outlast_config::Config::from_toml(&toml, &|_| None).unwrap()).await;
        let req = if stream {
            stream_body("chat")
        } else {
            chat_body("chat")
        };
        let r = post(&client(), &gw, &req).await;
        assert_eq!(r.status(), 200, "{body}");
        assert_eq!(header(&r, "x-outlast-target"), "b/m", "{body}");
    }
}

#[tokio::test]
async fn caller_faults_come_back_at_once_with_the_providers_explanation() {
    let a = sim_faults(
        "a",
        Faults {
            context_window: 5,
            ..Faults::default()
        },
    )
    .await;
    let b = sim("b").await;
    let gw = gateway(config(&[("a", &a), ("b", &b)], "")).await;
    let r = post(&client(), &gw, &chat_body("chat")).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(v["error"]["param"], "messages");
    assert_eq!(
        b.stats().requests,
        0,
        "a caller fault must not be sent to the next target"
    );

    let strict = sim_with(SimConfig {
        models: Some(vec!["gpt-4o-mini".into()]),
        ..SimConfig::openai("s")
    })
    .await;
    let gw = gateway(config(&[("s", &strict), ("b", &b)], "")).await;
    let r = post(&client(), &gw, &chat_body("s/not-a-model")).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn all_targets_down_is_503_with_retry_after() {
    let a = sim_faults(
        "a",
        Faults {
            down: true,
            ..Faults::default()
        },
    )
    .await;
    let b = sim_faults(
        "b",
        Faults {
            error_rate: 1.0,
            error_status: 429,
            ..Faults::default()
        },
    )
    .await;
    let gw = gateway(config(&[("a", &a), ("b", &b)], "")).await;
    for body in [chat_body("chat"), stream_body("chat")] {
        let r = post(&client(), &gw, &body).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            header(&r, "retry-after"),
            "1",
            "the provider's own Retry-After"
        );
        assert_eq!(header(&r, "content-type"), "application/json");
        let v: Value = r.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("2 targets tried") && msg.contains("Retry after"),
            "{msg}"
        );
        assert_eq!(v["error"]["type"], "server_error");
    }
}

#[tokio::test]
async fn deadline_gives_504() {
    let a = sim_faults(
        "a",
        Faults {
            latency: Duration::from_secs(3),
            ..Faults::default()
        },
    )
    .await;
    let mut cfg = config(&[("a", &a)], "");
    cfg.upstream.request_timeout = Duration::from_millis(300);
    let gw = gateway(cfg).await;
    let r = post(&client(), &gw, &chat_body("chat")).await;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "deadline_exceeded");
}

/// The text and ids of a relayed stream.
fn stream_parts(text: &str) -> (String, Vec<String>, bool) {
    let events = sse_data(text);
    let done = events.last().is_some_and(|e| e == "[DONE]");
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let content = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let ids = chunks
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    (content, ids, done)
}

#[tokio::test]
async fn a_stream_broken_mid_answer_resumes_on_the_next_target_seamlessly() {
    // What a healthy "a" would have said in full.
    let reference = sim("a").await;
    let gw = gateway(config(&[("a", &reference)], "")).await;
    let full: Value = post(&client(), &gw, &chat_body("chat"))
        .await
        .json()
        .await
        .unwrap();
    let full = full["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();

    for faults in [
        Faults {
            cut_after: Some(4),
            ..Faults::default()
        },
        Faults {
            error_after: Some(4),
            ..Faults::default()
        },
    ] {
        let a = sim_faults("a", faults.clone()).await;
        let b = sim("b").await;
        let gw = gateway(config(&[("a", &a), ("b", &b)], "")).await;
        let r = post(&client(), &gw, &stream_body("chat")).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let (content, ids, done) = stream_parts(&text);
        assert!(done, "{faults:?}: {text}");
        assert!(!text.contains("\"error\""), "{text}");
        assert_eq!(
            content, full,
            "one continuous answer: the prefix from a, the rest from b"
        );
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "one stream id throughout: {ids:?}"
        );
        // b was asked to continue after the partial answer.
        let sent = b.last_request().unwrap();
        let last = sent["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["role"], "assistant");
        assert_eq!(last["content"], "[a] Outlast keeps");
        let m = client()
            .get(gw.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(m.contains("outlast_streams_resumed_total 1"), "{m}");
    }
}

#[tokio::test]
async fn failure_after_the_first_byte_ends_with_an_error_event_when_it_cannot_resume() {
    // No other target.
    let a = sim_faults(
        "a",
        Faults {
            cut_after: Some(4),
            ..Faults::default()
        },
    )
    .await;
    let gw = gateway(config(&[("a", &a)], "")).await;
    let text = post(&client(), &gw, &stream_body("chat"))
        .await
        .text()
        .await
        .unwrap();
    assert_broken(&text);

    // A tool call half sent cannot be continued by prefixing text.
    let a = sim_faults(
        "a",
        Faults {
            cut_after: Some(2),
            ..Faults::default()
        },
    )
    .await;
    let b = sim("b").await;
    let gw = gateway(config(&[("a", &a), ("b", &b)], "")).await;
    let mut body = stream_body("chat");
    body["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]);
    let text = post(&client(), &gw, &body).await.text().await.unwrap();
    assert_broken(&text);
    assert_eq!(b.stats().requests, 0);

    // Several choices cannot either.
    let mut body = stream_body("chat");
    body["n"] = json!(2);
    let text = post(&client(), &gw, &body).await.text().await.unwrap();
    assert_broken(&text);
    assert_eq!(b.stats().requests, 0);

    // A stall mid-stream is detected by the stall timeout.
    let a = sim_faults(
        "a",
        Faults {
            stall_after: Some(3),
            ..Faults::default()
        },
    )
    .await;
    let mut cfg = config(&[("a", &a)], "");
    cfg.upstream.stream_stall_timeout = Duration::from_millis(300);
    let gw = gateway(cfg).await;
    let text = post(&client(), &gw, &stream_body("chat"))
        .await
        .text()
        .await
        .unwrap();
    assert_broken(&text);
    assert!(text.contains("sent nothing for"), "{text}");
}

fn assert_broken(text: &str) {
    let events = sse_data(text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cut off"),
        "{text}"
    );
    assert!(events.len() >= 2, "the partial answer was relayed: {text}");
}
