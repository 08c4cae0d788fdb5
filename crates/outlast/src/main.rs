//! The `outlast` binary: command line, logging, and assembling the crates into a gateway, a
//! simulator or the demo. No logic of its own beyond that.

mod demo;
mod keys;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use outlast_config::Config;
use outlast_server::{AppState, Server};

#[derive(Debug, Parser)]
#[command(
    name = "outlast",
    version,
    about = "An OpenAI-compatible AI gateway whose answers outlast any single provider's outage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// TOML configuration file. Without it, providers come from OPENAI_API_KEY,
        /// ANTHROPIC_API_KEY, GEMINI_API_KEY, PERPLEXITY_API_KEY and DEEPSEEK_API_KEY.
        #[arg(long, env = "OUTLAST_CONFIG")]
        config: Option<PathBuf>,
        /// Override the configured listen address.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Validate a configuration file; exit 1 naming the field and why if it is wrong.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the built-in demo: simulated providers, client traffic, an outage and a recovery.
    Demo(demo::DemoArgs),
    /// Run one simulated provider.
    Sim(sim::SimArgs),
    /// Run a drill: simulated providers, a timeline of faults and client load; print what
    /// clients saw per phase.
    Scenario(ScenarioArgs),
    /// Manage virtual keys: create (shown once, stored hashed), list, revoke.
    Keys(keys::KeysArgs),
}

#[derive(Debug, clap::Args)]
struct ScenarioArgs {
    /// Scenario file (TOML), e.g. scenarios/2024-06-04.toml.
    file: PathBuf,
    /// Multiply every time in the scenario (0.5 runs it twice as fast).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Run it twice, with the cascade guard on and off, and print both reports.
    #[arg(long)]
    compare_guard: bool,
    /// Force the cascade guard on or off.
    #[arg(long)]
    cascade_guard: Option<bool>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OUTLAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("outlast: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config, listen } => {
            init_logging();
            runtime.block_on(serve(config, listen))
        }
        Command::Demo(args) => {
            if std::env::var_os("OUTLAST_LOG").is_some() {
                init_logging();
            }
            runtime.block_on(demo::run(args))
        }
        Command::Sim(args) => {
            init_logging();
            runtime.block_on(sim::run(args))
        }
        Command::Keys(args) => runtime.block_on(keys::run(args)),
        Command::Scenario(args) => {
            if std::env::var_os("OUTLAST_LOG").is_some() {
                init_logging();
            }
            runtime.block_on(scenario(args))
        }
    }
}

async fn scenario(args: ScenarioArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("outlast scenario: cannot read {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    let scenario = match outlast_drill::Scenario::parse(&text) {
        Ok(s) => s.scaled(args.time_scale),
        Err(e) => {
            eprintln!("outlast scenario: {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    println!("{}", scenario.name);
    if let Some(d) = &scenario.description {
        println!("{}", d.trim());
    }
    let guards: Vec<Option<bool>> = if args.compare_guard {
        vec![Some(true), Some(false)]
    } else {
        vec![args.cascade_guard]
    };
    for guard in guards {
        println!();
        let opts = outlast_drill::RunOptions {
            cascade_guard: guard,
            progress: true,
        };
        match outlast_drill::run(&scenario, &opts).await {
            Ok(report) => println!("\n{report}"),
            Err(e) => {
                eprintln!("outlast scenario: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path).map(|c| AppState::new(c).map(|_| ())) {
        Ok(Ok(())) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: Option<PathBuf>, listen: Option<std::net::SocketAddr>) -> ExitCode {
    let loaded = match &path {
        Some(p) => Config::load(p),
        None => match Config::from_env(
            &|name| std::env::var(name).ok(),
            &outlast_providers::supports,
        ) {
            Some(c) => c,
            None => {
                eprintln!(
                    "outlast: nothing to serve. Give a configuration file (outlast serve --config outlast.toml),\n\
                     or set at least one of OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, PERPLEXITY_API_KEY, DEEPSEEK_API_KEY.\n\
                     To see Outlast work without any key, run: outlast demo"
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let mut config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("outlast: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = listen {
        config.listen = addr;
    }
    if config.auth.api_keys.is_empty() && !config.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.listen, "no auth.api_keys configured: anyone who reaches this address can spend your provider keys");
    }
    let state = match AppState::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outlast: {e}");
            return ExitCode::FAILURE;
        }
    };
    let db = match &state.config.database_url {
        Some(url) => outlast_store::Db::open_postgres(url.expose()).await,
        None => outlast_store::Db::open_sqlite(&state.config.data_dir).await,
    };
    let attached = match db {
        Ok(db) => outlast_server::attach_store(&state, db).await,
        Err(e) => Err(e),
    };
    if let Err(e) = attached {
        eprintln!("outlast: cannot open the store (virtual keys, usage ledger): {e}");
        return ExitCode::FAILURE;
    }
    let server = match Server::bind(state.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outlast: cannot listen on {}: {e}", state.config.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = server
        .local_addr()
        .map_or_else(|_| state.config.listen.to_string(), |a| a.to_string());
    let routes: Vec<&str> = state
        .config
        .routes
        .iter()
        .map(|r| r.model.as_str())
        .collect();
    tracing::info!(%addr, providers = state.config.providers.len(), routes = ?routes, "outlast is serving");
    let report = server.run(shutdown_signal()).await;
    if report.drained {
        tracing::info!("stopped cleanly");
        ExitCode::SUCCESS
    } else {
        tracing::warn!("stopped with requests still in flight after the grace period");
        ExitCode::FAILURE
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
