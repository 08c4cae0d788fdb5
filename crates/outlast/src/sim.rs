//! `outlast sim`: one simulated provider on an address, with its faults set from flags and
//! changeable over HTTP while it runs.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use outlast_sim::{Faults, SimConfig, SimProtocol};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProtocolArg {
    Openai,
    Anthropic,
    Gemini,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Wire protocol to speak.
    #[arg(long, value_enum, default_value = "openai")]
    protocol: ProtocolArg,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Separate address for the control API (/_sim/faults, /_sim/stats), reachable even while
    /// the simulator is hard down.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Name shown in answers.
    #[arg(long, default_value = "sim")]
    name: String,
    /// Require this API key.
    #[arg(long, env = "OUTLAST_SIM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Added before response headers, e.g. 200ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// Added before the first streamed event.
    #[arg(long, value_parser = humantime::parse_duration)]
    first_token: Option<Duration>,
    /// Streaming speed (0: all at once).
    #[arg(long)]
    tokens_per_sec: Option<f64>,
    /// Answer length in tokens.
    #[arg(long)]
    answer_tokens: Option<u32>,
    /// Share of requests (0..1) answered with --error-status.
    #[arg(long)]
    error_rate: Option<f64>,
    #[arg(long)]
    error_status: Option<u16>,
    /// Concurrent requests served before answering as a saturated provider does.
    #[arg(long)]
    capacity: Option<u32>,
    /// Cut streams after N events.
    #[arg(long)]
    cut_after: Option<u32>,
    /// Stall streams after N events.
    #[arg(long)]
    stall_after: Option<u32>,
    /// Send an error event after N events.
    #[arg(long)]
    error_after: Option<u32>,
    /// Start hard down (connections refused).
    #[arg(long)]
    down: bool,
}

impl SimArgs {
    fn faults(&self) -> Faults {
        let d = Faults::default();
        Faults {
            latency: self.latency.unwrap_or(d.latency),
            first_token: self.first_token.unwrap_or(d.first_token),
            tokens_per_sec: self.tokens_per_sec.unwrap_or(d.tokens_per_sec),
            answer_tokens: self.answer_tokens.unwrap_or(d.answer_tokens),
            error_rate: self.error_rate.unwrap_or(d.error_rate),
            error_status: self.error_status.unwrap_or(d.error_status),
            capacity: self.capacity,
            cut_after: self.cut_after,
            stall_after: self.stall_after,
            error_after: self.error_after,
            down: self.down,
            ..d
        }
    }
}

pub async fn run(args: SimArgs) -> ExitCode {
    let protocol = match args.protocol {
        ProtocolArg::Openai => SimProtocol::Openai,
        ProtocolArg::Anthropic => SimProtocol::Anthropic,
        ProtocolArg::Gemini => SimProtocol::Gemini,
    };
    let config = SimConfig {
        protocol,
        name: args.name.clone(),
        api_key: args.api_key.clone(),
        models: None,
        faults: args.faults(),
    };
    let handle = match outlast_sim::start(args.listen, config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("outlast sim: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %handle.addr(), base_url = %handle.base_url(), "simulated provider is serving");
    if let Some(control) = args.control {
        match outlast_sim::start_control(control, &handle).await {
            Ok(a) => tracing::info!(addr = %a, "control API (/_sim/faults, /_sim/stats)"),
            Err(e) => {
                eprintln!("outlast sim: cannot listen on {control}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    crate::shutdown_signal().await;
    ExitCode::SUCCESS
}
