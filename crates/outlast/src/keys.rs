//! `outlast keys create|list|revoke`: manage virtual keys in the configured store (the
//! SQLite file under `data_dir`, or `database_url`). A running gateway picks changes up
//! within `keys.refresh_interval`; the admin API revokes on its replica at once.

use std::path::PathBuf;
use std::process::ExitCode;

use outlast_config::Config;
use outlast_server::protect::admin::{CreateKey, describe};
use outlast_store::Db;

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// Configuration file whose store to use (`data_dir` or `database_url`).
    #[arg(long, env = "OUTLAST_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Use the SQLite store in this directory instead (default ./outlast-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Create a key and print it once; only its hash is stored.
    Create {
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// Models the key may use (route names or provider/model), comma-separated; default any.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// critical, default or sheddable.
        #[arg(long, default_value = "default")]
        priority: String,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute (prompt + completion).
        #[arg(long)]
        tpm: Option<u64>,
        /// Requests in flight at once.
        #[arg(long)]
        max_concurrent: Option<u64>,
        /// Spend per UTC day, in USD.
        #[arg(long)]
        budget_daily: Option<f64>,
        /// Spend per UTC month, in USD.
        #[arg(long)]
        budget_monthly: Option<f64>,
    },
    /// List keys (never their secrets) as JSON lines.
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

async fn open(args: &KeysArgs) -> Result<Db, String> {
    if let Some(dir) = &args.data_dir {
        return Db::open_sqlite(dir).await.map_err(|e| e.to_string());
    }
    let Some(path) = &args.config else {
        return Db::open_sqlite(std::path::Path::new("./outlast-data"))
            .await
            .map_err(|e| e.to_string());
    };
    let config = Config::load(path).map_err(|e| format!("configuration error: {e}"))?;
    match &config.database_url {
        Some(url) => Db::open_postgres(url.expose()).await,
        None => Db::open_sqlite(&config.data_dir).await,
    }
    .map_err(|e| e.to_string())
}

pub async fn run(args: KeysArgs) -> ExitCode {
    let db = match open(&args).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("outlast keys: cannot open the store: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.command {
        KeysCommand::Create {
            name,
            models,
            priority,
            rpm,
            tpm,
            max_concurrent,
            budget_daily,
            budget_monthly,
        } => {
            let req = CreateKey {
                name,
                models,
                priority: Some(priority),
                rpm,
                tpm,
                max_concurrent,
                budget_daily_usd: budget_daily,
                budget_monthly_usd: budget_monthly,
            };
            let (name, limits) = match req.into_limits() {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("outlast keys create: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match db.create_key(&name, limits).await {
                Ok(new) => {
                    println!("{}", new.secret);
                    eprintln!(
                        "created {} ({}). The key above is shown only now; store it safely.",
                        new.record.id, new.record.name
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("outlast keys create: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        KeysCommand::List => match db.list_keys().await {
            Ok(keys) => {
                for k in &keys {
                    println!("{}", describe(k));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("outlast keys list: {e}");
                ExitCode::FAILURE
            }
        },
        KeysCommand::Revoke { id } => match db.revoke_key(&id).await {
            Ok(true) => {
                eprintln!("revoked {id}");
                ExitCode::SUCCESS
            }
            Ok(false) => {
                eprintln!("outlast keys revoke: no active key with id {id}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("outlast keys revoke: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
