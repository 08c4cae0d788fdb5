//! Bad input, abusive clients and shutdown: every case gets a clear 4xx in OpenAI's shape,
//! nothing panics, and the server keeps serving.

// Test crate: helpers panic on purpose, a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use outlast_sim::Faults;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("an OpenAI-shaped JSON error body");
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| m.len() > 10),
        "{v}"
    );
    assert!(v["error"]["type"].is_string(), "{v}");
    (status, v)
}

#[tokio::test]
async fn bad_requests_get_clear_400s_naming_the_field() {
    let a = sim("a").await;
    let gw = gateway(config(&[("a", &a)], "")).await;
    let c = client();
    let raw = |body: &'static str| {
        c.post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("{not json", None),
        ("", None),
        ("[1,2]", None),
        ("{\"model\": \"chat\"}", None),
        (
            "{\"model\": \"chat\", \"messages\": \"hi\"}",
            Some("messages"),
        ),
        ("{\"model\": 5, \"messages\": []}", Some("model")),
        ("{\"model\": \"chat\", \"messages\": []}", Some("messages")),
        (
            "{\"model\": \"chat\", \"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}",
            Some("messages[0].role"),
        ),
        (
            "{\"model\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": 7}]}",
            Some("messages[0]"),
        ),
        (
            "{\"model\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream\": \"yes\"}",
            Some("stream"),
        ),
        (
            "{\"model\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": -1}",
            Some("n"),
        ),
        (
            "{\"model\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream_options\": {\"include_usage\": true}}",
            Some("stream_options"),
        ),
    ];
    for (body, param) in cases {
        let (status, v) = error_of(raw(body).await.unwrap()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"].as_str(), param, "{body}: {v}");
    }
    assert_eq!(a.stats().requests, 0, "no bad request reached a provider");
    // Still serving.
    assert_eq!(post(&c, &gw, &chat_body("chat")).await.status(), 200);
}

#[tokio::test]
async fn unknown_model_endpoint_and_method() {
    let a = sim("a").await;
    let gw = gateway(config(&[("a", &a)], "")).await;
    let c = client();
    let (s, v) = error_of(post(&c, &gw, &chat_body("gpt-9")).await).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let (s, _) = error_of(post(&c, &gw, &chat_body("nobody/gpt-9")).await).await;
    assert_eq!(s, 404);
    let (s, _) = error_of(c.get(gw.url("/v1/nothing")).send().await.unwrap()).await;
    assert_eq!(s, 404);
    let (s, _) = error_of(c.get(gw.url("/v1/chat/completions")).send().await.unwrap()).await;
    assert_eq!(s, 405);
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let a = sim("a").await;
    let gw = gateway(config(&[("a", &a)], "[server]\nmax_body_bytes = 2048\n")).await;
    let c = client();
    let big = json!({"model": "chat", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (s, v) = error_of(post(&c, &gw, &big).await).await;
    assert_eq!(s, 413, "{v}");
    // Without Content-Length (chunked), the cap applies while reading.
    let chunks =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(a.stats().requests, 0);
    assert_eq!(post(&c, &gw, &chat_body("chat")).await.status(), 200);
}

/// Read whatever the server sends until it closes or `limit` passes.
async fn read_until_close(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut buf))
        .await
        .is_ok();
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

#[tokio::test]
async fn slow_and_truncated_bodies_get_408_and_do_not_hurt_others() {
    let a = sim("a").await;
    let gw = gateway(config(
        &[("a", &a)],
        "[server]\nbody_read_timeout = \"300ms\"\n",
    ))
    .await;
    // Announce 100 bytes, send 10, then wait: 408 after the body read timeout.
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":").await.unwrap();
    // Meanwhile a normal client is served.
    assert_eq!(post(&client(), &gw, &chat_body("chat")).await.status(), 200);
    let (text, _) = read_until_close(&mut slow, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");

    // Announce 100 bytes, send 10 and hang up: the server shrugs and keeps serving.
    let mut cut = TcpStream::connect(gw.addr).await.unwrap();
    cut.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    drop(cut);
    assert_eq!(post(&client(), &gw, &chat_body("chat")).await.status(), 200);
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let a = sim("a").await;
    let gw = gateway(config(
        &[("a", &a)],
        "[server]\nheader_read_timeout = \"300ms\"\n",
    ))
    .await;
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_close(&mut slow, Duration::from_secs(5)).await;
    assert!(
        closed,
        "the connection of a client that never finishes its headers is closed"
    );
    assert_eq!(post(&client(), &gw, &chat_body("chat")).await.status(), 200);
}

#[tokio::test]
async fn client_keys_are_required_when_configured() {
    let a = sim("a").await;
    let gw = gateway(config(
        &[("a", &a)],
        "[auth]\napi_keys = [\"sk-outlast-1\"]\n",
    ))
    .await;
    let c = client();
    let (s, v) = error_of(post(&c, &gw, &chat_body("chat")).await).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-outlast-2")
        .json(&chat_body("chat"))
        .send()
        .await
        .unwrap();
    let (s, v) = error_of(r).await;
    assert_eq!(s, 401);
    assert!(
        !v.to_string().contains("sk-outlast"),
        "an error never echoes keys: {v}"
    );
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-outlast-1")
        .json(&chat_body("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", "sk-outlast-1")
        .json(&chat_body("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        c.get(gw.url("/v1/models")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        c.get(gw.url("/healthz")).send().await.unwrap().status(),
        200,
        "health needs no key"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let a = sim_faults(
        "a",
        Faults {
            latency: Duration::from_millis(500),
            ..Faults::default()
        },
    )
    .await;
    let mut gw = gateway(config(&[("a", &a)], "[server]\nshutdown_grace = \"5s\"\n")).await;
    let c = client();
    let url = gw.url("/v1/chat/completions");
    let in_flight = tokio::spawn({
        let c = c.clone();
        async move {
            c.post(url)
                .json(&chat_body("chat"))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Shut down once the request is with the provider.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.stats().in_flight == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done = gw.begin_shutdown();
    let report = done.await.unwrap();
    assert!(report.drained);
    assert_eq!(
        in_flight.await.unwrap(),
        200,
        "the in-flight request finished"
    );
    assert!(
        TcpStream::connect(gw.addr).await.is_err(),
        "no new connections after shutdown"
    );
}
