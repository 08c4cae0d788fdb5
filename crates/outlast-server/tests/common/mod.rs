//! Test harness: simulated providers and a gateway in this process, on port 0.

#![allow(dead_code)]
// A harness: a failure to set up is a failed test, so panicking is the right answer here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;

use outlast_config::Config;
use outlast_server::{AppState, Server, ShutdownReport};
use outlast_sim::{Faults, SimConfig, SimHandle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const LOCAL: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

pub async fn sim(name: &str) -> SimHandle {
    sim_with(SimConfig::openai(name)).await
}

pub async fn sim_with(config: SimConfig) -> SimHandle {
    outlast_sim::start(LOCAL, config)
        .await
        .expect("start simulator")
}

pub async fn sim_faults(name: &str, faults: Faults) -> SimHandle {
    sim_with(SimConfig {
        faults,
        ..SimConfig::openai(name)
    })
    .await
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<ShutdownReport>>,
}

impl Gateway {
    /// A gateway started by a test with its own assembly (a store, say).
    pub fn from_parts(
        addr: SocketAddr,
        state: Arc<AppState>,
        stop: oneshot::Sender<()>,
        task: JoinHandle<ShutdownReport>,
    ) -> Self {
        Self {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signal shutdown and wait for the server to drain.
    pub async fn shutdown(mut self) -> ShutdownReport {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }

    /// Signal shutdown without waiting.
    pub fn begin_shutdown(&mut self) -> JoinHandle<ShutdownReport> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A config with one provider per simulator (named after it) and a route "chat" over all of
/// them in order; `extra` is appended verbatim (more sections).
pub fn config(sims: &[(&str, &SimHandle)], extra: &str) -> Config {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "outlast-server-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut toml = format!("data_dir = {:?}\n", dir.display().to_string());
    toml.push_str(
        "[upstream]\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"3s\"\nrequest_timeout = \"10s\"\nstream_stall_timeout = \"3s\"\n",
    );
    toml.push_str(extra);
    for (name, sim) in sims {
        toml.push_str(&format!(
            "\n[[providers]]\nname = \"{name}\"\nprotocol = \"openai\"\nbase_url = \"{}\"\nmodels = [\"gpt-4o-mini\"]\n",
            sim.base_url()
        ));
    }
    if !sims.is_empty() {
        let targets: Vec<String> = sims
            .iter()
            .map(|(n, _)| format!("\"{n}/gpt-4o-mini\""))
            .collect();
        toml.push_str(&format!(
            "\n[[routes]]\nmodel = \"chat\"\ntargets = [{}]\n",
            targets.join(", ")
        ));
    }
    Config::from_toml(&toml, &|_| None).expect("test config")
}

pub async fn gateway(config: Config) -> Gateway {
    let state = AppState::new(config).expect("build gateway");
    let listener = tokio::net::TcpListener::bind(LOCAL).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let server = Server::from_listener(listener, Arc::clone(&state));
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Gateway {
        addr,
        state,
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn chat_body(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]})
}

pub fn stream_body(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}], "stream": true, "stream_options": {"include_usage": true}})
}

/// Split an SSE body into its `data:` payloads.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

pub async fn post(
    client: &reqwest::Client,
    gw: &Gateway,
    body: &serde_json::Value,
) -> reqwest::Response {
    client
        .post(gw.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

pub fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
