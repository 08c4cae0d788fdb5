//! Running a scenario.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outlast_config::Config;
use outlast_server::{AppState, Server};
use outlast_sim::{SimConfig, SimHandle, SimStats};
use tokio::time::Instant;

use crate::report::{self, Record, Sample};
use crate::scenario::Scenario;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Override the scenario's cascade guard setting.
    pub cascade_guard: Option<bool>,
    /// Print a line per second while running.
    pub progress: bool,
}

const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Merge `extra` into `base`, table by table (later keys win).
fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (k, v) in extra {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge(b, e),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn gateway_config(s: &Scenario, sims: &[SimHandle], opts: &RunOptions) -> Result<Config, String> {
    let mut table: toml::Table = toml::from_str(
        "[upstream]\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"10s\"\nrequest_timeout = \"30s\"\nstream_stall_timeout = \"5s\"\n",
    )
    .map_err(|e| e.to_string())?;
    if let Some(extra) = &s.gateway {
        let extra: toml::Table = toml::from_str(extra).map_err(|e| format!("gateway: {e}"))?;
        merge(&mut table, extra);
    }
    let mut toml = toml::to_string(&table).map_err(|e| e.to_string())?;
    for (p, sim) in s.providers.iter().zip(sims) {
        toml.push_str(&format!(
            "[[providers]]\nname = \"{}\"\nbase_url = \"{}\"\n",
            p.name,
            sim.base_url()
        ));
        if let Some(m) = p.max_concurrency {
            toml.push_str(&format!("max_concurrency = {m}\n"));
        }
    }
    let targets: Vec<String> = s.route.iter().map(|t| format!("\"{t}\"")).collect();
    toml.push_str(&format!(
        "[[routes]]\nmodel = \"chat\"\ntargets = [{}]\n",
        targets.join(", ")
    ));
    let mut config = Config::from_toml(&toml, &|_| None).map_err(|e| e.to_string())?;
    if let Some(g) = opts.cascade_guard {
        config.resilience.cascade_guard = g;
    }
    Ok(config)
}

/// Run the scenario to its end and report.
pub async fn run(scenario: &Scenario, opts: &RunOptions) -> Result<report::Report, String> {
    let mut sims = Vec::new();
    for p in &scenario.providers {
        let config = SimConfig {
            faults: p.faults.clone(),
            ..SimConfig::openai(p.name.clone())
        };
        sims.push(
            outlast_sim::start(LOCAL, config)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let config = gateway_config(scenario, &sims, opts)?;
    let cascade_guard = config.resilience.cascade_guard;
    let state = AppState::new(config).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(LOCAL)
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::from_listener(listener, Arc::clone(&state)).run(async {
            let _ = stop_rx.await;
        }),
    );

    let start = Instant::now();
    let end = start + scenario.duration;
    let clients = Arc::new(AtomicUsize::new(scenario.load.clients));
    let sent = Arc::new(AtomicU64::new(0));
    let records: Arc<Mutex<Vec<Record>>> = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(2000)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("http://{addr}/v1/chat/completions");
    let max_clients = scenario
        .events
        .iter()
        .filter_map(|e| e.clients)
        .chain(std::iter::once(scenario.load.clients))
        .max()
        .unwrap_or(scenario.load.clients);
    let mut workers = Vec::new();
    for id in 0..max_clients {
        let (http, url, clients, sent, records) = (
            http.clone(),
            url.clone(),
            Arc::clone(&clients),
            Arc::clone(&sent),
            Arc::clone(&records),
        );
        let load = scenario.load.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(id as u64 + 1);
            while Instant::now() < end {
                if id >= clients.load(Ordering::Relaxed) {
                    tokio::time::sleep(load.think.max(Duration::from_millis(10))).await;
                    continue;
                }
                if sent.fetch_add(1, Ordering::Relaxed) >= load.max_requests {
                    break;
                }
                let stream = rng.f64() < load.stream_share;
                let record = report::one_request(&http, &url, stream, start).await;
                if let Ok(mut r) = records.lock() {
                    r.push(record);
                }
                tokio::time::sleep(load.think).await;
            }
        }));
    }

    // The timeline: apply events in order and sample counters at each phase boundary.
    let mut events = scenario.events.clone();
    events.sort_by_key(|e| e.at);
    let sample = |label: &str, at: Duration| Sample {
        phase: label.to_string(),
        at,
        sims: sims
            .iter()
            .map(|s| (s.stats(), s.take_max_in_flight()))
            .collect::<Vec<(SimStats, u32)>>(),
        upstream_attempts: state.metrics.upstream_attempts(),
    };
    let mut samples = vec![sample("start", Duration::ZERO)];
    let mut breaker_log: Vec<(Duration, String, bool)> = Vec::new();
    let mut pending = events.iter().peekable();
    let mut next_progress = Duration::from_secs(1);
    loop {
        let now = start.elapsed();
        while let Some(e) = pending.peek() {
            if e.at > now {
                break;
            }
            // The phase starts when the event takes effect (up to one tick after its time),
            // so no request is counted in a phase whose conditions it did not see.
            if samples.last().is_none_or(|s| s.phase != e.phase) {
                samples.push(sample(&e.phase, now));
            }
            if let (Some(p), Some(patch)) = (&e.provider, &e.faults)
                && let Some(i) = scenario.providers.iter().position(|x| &x.name == p)
                && let Some(sim) = sims.get(i)
            {
                let patch = serde_json::to_value(patch).map_err(|e| e.to_string())?;
                let faults = sim
                    .faults()
                    .merge(patch)
                    .map_err(|err| format!("event `{}`: {err}", e.phase))?;
                sim.set_faults(faults);
            }
            if let Some(n) = e.clients {
                clients.store(n, Ordering::Relaxed);
            }
            if opts.progress {
                println!("  t={:>5.1}s  >>> {}", now.as_secs_f64(), e.phase);
            }
            pending.next();
        }
        for (label, open, _) in state.health.snapshot() {
            let was_open = breaker_log
                .iter()
                .rev()
                .find(|(_, l, _)| *l == label)
                .is_some_and(|(_, _, o)| *o);
            if open != was_open {
                breaker_log.push((now, label, open));
            }
        }
        if opts.progress && now >= next_progress {
            let done = records.lock().map(|r| r.len()).unwrap_or(0);
            println!("  t={:>5.1}s  {done} requests completed", now.as_secs_f64());
            next_progress += Duration::from_secs(1);
        }
        if Instant::now() >= end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for w in workers {
        let _ = w.await;
    }
    samples.push(sample("end", start.elapsed()));
    let _ = stop_tx.send(());
    let _ = server.await;
    let records = records.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(report::build(
        scenario,
        cascade_guard,
        &records,
        &samples,
        &breaker_log,
    ))
}
