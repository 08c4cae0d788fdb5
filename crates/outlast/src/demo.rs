//! `outlast demo`: the whole story in half a minute, with no keys and no network. Three
//! simulated providers behind one route, a bounded stream of client traffic, the primary taken
//! hard down and brought back, and what the clients saw, second by second.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use outlast_config::Config;
use outlast_server::{AppState, Server};
use outlast_sim::{Faults, SimConfig, SimHandle};
use tokio::time::Instant;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Gateway address (a free port is used if it is taken).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How long client traffic runs.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent simulated clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Keep the gateway and simulators running after the traffic, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
}

/// One simulated provider per wire protocol, in failover order.
const PROVIDERS: [&str; 3] = ["openai", "anthropic", "gemini"];
const MODELS: [&str; 3] = ["gpt-4o-mini", "claude-3-5-haiku-latest", "gemini-2.0-flash"];

#[derive(Debug, Default, Clone)]
struct Tally {
    answered: u64,
    failed_over: u64,
    errors: u64,
    by_target: [u64; 3],
    latencies_ms: Vec<f64>,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Answered {
                attempts,
                target,
                ms,
            } => {
                self.answered += 1;
                // Answered by a fallback: after a failed attempt, or routed there directly
                // because the primary's breaker is open.
                if *attempts > 1 || *target != 0 {
                    self.failed_over += 1;
                }
                if let Some(slot) = self.by_target.get_mut(*target) {
                    *slot += 1;
                }
                self.latencies_ms.push(*ms);
            }
            Outcome::Error => self.errors += 1,
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or(0.0)
    }
}

enum Outcome {
    Answered {
        attempts: u32,
        target: usize,
        ms: f64,
    },
    Error,
}

struct Book {
    second: Tally,
    phases: [Tally; 3],
    phase: usize,
}

async fn start_sims() -> std::io::Result<Vec<SimHandle>> {
    let mut sims = Vec::new();
    for (i, name) in PROVIDERS.iter().enumerate() {
        let faults = Faults {
            latency: Duration::from_millis(30 + 10 * i as u64),
            answer_tokens: 12,
            tokens_per_sec: 400.0,
            ..Faults::default()
        };
        let base = match i {
            0 => SimConfig::openai(*name),
            1 => SimConfig::anthropic(*name),
            _ => SimConfig::gemini(*name),
        };
        let config = SimConfig { faults, ..base };
        sims.push(outlast_sim::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await?);
    }
    Ok(sims)
}

fn gateway_config(sims: &[SimHandle], listen: SocketAddr) -> Result<Config, String> {
    let mut toml = format!(
        "listen = \"{listen}\"\n[upstream]\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"5s\"\nrequest_timeout = \"20s\"\n"
    );
    for (name, sim) in PROVIDERS.iter().zip(sims) {
        toml.push_str(&format!(
            "[[providers]]\nname = \"{name}\"\nprotocol = \"{name}\"\nbase_url = \"{}\"\n",
            sim.base_url()
        ));
    }
    let targets: Vec<String> = PROVIDERS
        .iter()
        .zip(MODELS)
        .map(|(p, m)| format!("\"{p}/{m}\""))
        .collect();
    toml.push_str(&format!(
        "[[routes]]\nmodel = \"chat\"\ntargets = [{}]\n",
        targets.join(", ")
    ));
    Config::from_toml(&toml, &|_| None).map_err(|e| e.to_string())
}

pub async fn run(args: DemoArgs) -> ExitCode {
    let sims = match start_sims().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outlast demo: cannot start the simulated providers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(_) => {
            match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("outlast demo: cannot listen: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("outlast demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = match gateway_config(&sims, addr).map(AppState::new) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            eprintln!("outlast demo: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("outlast demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::from_listener(listener, state).run(async {
        let _ = stop_rx.await;
    }));

    println!("Outlast demo: one OpenAI-compatible endpoint, three simulated providers behind it.");
    println!(
        "  gateway   http://{addr}/v1   (route \"chat\" -> OpenAI, then Anthropic, then Gemini; each simulated in its own wire format)"
    );
    for (name, sim) in PROVIDERS.iter().zip(&sims) {
        println!("  {name:<9} {}", sim.base_url());
    }
    println!("  metrics   http://{addr}/metrics");
    let down_at = args.duration.mul_f64(0.3);
    let up_at = args.duration.mul_f64(0.65);
    println!(
        "{} clients send requests for {:?}; the primary (openai) goes hard down at {:.0}s and comes back at {:.0}s.\n",
        args.clients,
        args.duration,
        down_at.as_secs_f64(),
        up_at.as_secs_f64()
    );

    let book = Arc::new(Mutex::new(Book {
        second: Tally::default(),
        phases: Default::default(),
        phase: 0,
    }));
    let start = Instant::now();
    let end = start + args.duration;
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("outlast demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("http://{addr}/v1/chat/completions");
    let mut workers = Vec::new();
    for w in 0..args.clients {
        let (client, url, book) = (client.clone(), url.clone(), Arc::clone(&book));
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            // Bounded in time and in count.
            while Instant::now() < end && n < 100_000 {
                n += 1;
                let outcome = one_request(&client, &url, w, n).await;
                if let Ok(mut b) = book.lock() {
                    b.second.add(&outcome);
                    let p = b.phase;
                    if let Some(t) = b.phases.get_mut(p) {
                        t.add(&outcome);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let primary = sims.first();
    loop {
        tick.tick().await;
        let t = start.elapsed();
        let phase = if t < down_at {
            0
        } else if t < up_at {
            1
        } else {
            2
        };
        let (second, old_phase) = match book.lock() {
            Ok(mut b) => {
                let s = std::mem::take(&mut b.second);
                let old = b.phase;
                b.phase = phase;
                (s, old)
            }
            Err(_) => break,
        };
        let state = if primary.is_some_and(|p| p.faults().down) {
            "DOWN"
        } else {
            "up  "
        };
        println!(
            "  t={:>3.0}s  openai {state}  answered {:>4}  failed over {:>4}  errors {:>3}  p50 {:>4.0} ms   served by openai {:>4} | anthropic {:>4} | gemini {:>4}",
            t.as_secs_f64(),
            second.answered,
            second.failed_over,
            second.errors,
            second.percentile(0.5),
            second.by_target[0],
            second.by_target[1],
            second.by_target[2],
        );
        if phase != old_phase
            && let Some(p) = primary
        {
            let down = phase == 1;
            p.update(|f| f.down = down);
            println!(
                "{}",
                if down {
                    "  >>> the primary (openai) is now HARD DOWN (connections refused)"
                } else {
                    "  >>> the primary (openai) is back UP"
                }
            );
        }
        if Instant::now() >= end {
            break;
        }
    }
    for w in workers {
        let _ = w.await;
    }

    let phases = book.lock().map(|b| b.phases.clone()).unwrap_or_default();
    println!("\nWhat the clients saw:");
    println!(
        "  {:<22} {:>8} {:>9} {:>12} {:>7} {:>8} {:>8}",
        "phase", "requests", "answered", "failed over", "errors", "p50 ms", "p99 ms"
    );
    let names = ["before the outage", "openai hard down", "after recovery"];
    let mut total = Tally::default();
    for (name, t) in names.iter().zip(&phases) {
        println!(
            "  {:<22} {:>8} {:>9} {:>12} {:>7} {:>8.0} {:>8.0}",
            name,
            t.answered + t.errors,
            t.answered,
            t.failed_over,
            t.errors,
            t.percentile(0.5),
            t.percentile(0.99)
        );
        total.answered += t.answered;
        total.errors += t.errors;
        total.failed_over += t.failed_over;
    }
    let all = total.answered + total.errors;
    let share = if all == 0 {
        0.0
    } else {
        100.0 * total.answered as f64 / all as f64
    };
    println!(
        "\n{} of {} requests answered ({share:.2}%); {} of them failed over without the client noticing.",
        total.answered, all, total.failed_over
    );
    for (name, sim) in PROVIDERS.iter().zip(&sims) {
        let s = sim.stats();
        println!(
            "  {name:<9} received {:>5} requests, answered {:>5}",
            s.requests, s.answered
        );
    }

    if args.keep_running {
        println!(
            "\nThe gateway keeps running at http://{addr}/v1 (model \"chat\"). Ctrl-C to stop."
        );
        crate::shutdown_signal().await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    if total.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn one_request(client: &reqwest::Client, url: &str, worker: usize, n: u64) -> Outcome {
    let stream = (worker as u64 + n).is_multiple_of(4);
    let body = serde_json::json!({
        "model": "chat",
        "messages": [{"role": "user", "content": format!("Client {worker}, request {n}: say something reassuring.")}],
        "stream": stream,
    });
    let started = Instant::now();
    let Ok(response) = client.post(url).json(&body).send().await else {
        return Outcome::Error;
    };
    if !response.status().is_success() {
        return Outcome::Error;
    }
    let attempts = response
        .headers()
        .get("x-outlast-attempts")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let target = response
        .headers()
        .get("x-outlast-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| {
            PROVIDERS
                .iter()
                .position(|p| t.starts_with(&format!("{p}/")))
        })
        .unwrap_or(0);
    match response.text().await {
        Ok(text) if !stream || text.trim_end().ends_with("data: [DONE]") => Outcome::Answered {
            attempts,
            target,
            ms: started.elapsed().as_secs_f64() * 1000.0,
        },
        _ => Outcome::Error,
    }
}
