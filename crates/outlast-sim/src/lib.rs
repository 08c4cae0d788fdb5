//! Simulated providers: HTTP servers that speak a provider's wire format exactly (JSON bodies,
//! SSE event sequences, error bodies, rate-limit headers) and misbehave on demand. They are the
//! test double for every test, the demo and the benchmarks.
//!
//! Faults ([`Faults`]) can be changed while a simulator runs, in-process through [`SimHandle`]
//! or over HTTP at `/_sim/faults` (on the main listener, or on a separate control listener so
//! that a simulator that is hard down can still be brought back).

mod anthropic;
mod control;
mod faults;
mod gemini;
mod openai;
mod play;
mod text;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use faults::Faults;
pub use gemini::BLOCK_MARKER as GEMINI_BLOCK_MARKER;

/// Wire protocol a simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimProtocol {
    Openai,
    Anthropic,
    Gemini,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub protocol: SimProtocol,
    /// Shown in answers, so a test can tell which simulator replied.
    pub name: String,
    /// When set, requests must carry this key.
    pub api_key: Option<String>,
    /// When set, other models get the provider's "model not found" error.
    pub models: Option<Vec<String>>,
    pub faults: Faults,
}

impl SimConfig {
    pub fn openai(name: impl Into<String>) -> Self {
        Self::new(SimProtocol::Openai, name)
    }

    pub fn anthropic(name: impl Into<String>) -> Self {
        Self::new(SimProtocol::Anthropic, name)
    }

    pub fn gemini(name: impl Into<String>) -> Self {
        Self::new(SimProtocol::Gemini, name)
    }

    pub fn new(protocol: SimProtocol, name: impl Into<String>) -> Self {
        Self {
            protocol,
            name: name.into(),
            api_key: None,
            models: None,
            faults: Faults::default(),
        }
    }
}

/// Counters a test reads to check what reached the provider.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SimStats {
    /// Requests that reached a handler (rejected ones included).
    pub requests: u64,
    /// Requests answered 2xx.
    pub answered: u64,
    /// Requests refused for capacity.
    pub rejected_capacity: u64,
    /// Requests answered with an injected error.
    pub injected_errors: u64,
    pub in_flight: u32,
    pub max_in_flight: u32,
}

#[derive(Debug)]
pub(crate) struct SimState {
    pub config: SimConfig,
    pub faults: RwLock<Faults>,
    pub down: watch::Sender<bool>,
    pub requests: AtomicU64,
    pub answered: AtomicU64,
    pub rejected_capacity: AtomicU64,
    pub injected_errors: AtomicU64,
    pub in_flight: AtomicU32,
    pub max_in_flight: AtomicU32,
    /// The body of the last request that reached a handler, for tests to inspect.
    pub last_request: std::sync::Mutex<Option<bytes::Bytes>>,
}

impl SimState {
    pub fn faults(&self) -> Faults {
        match self.faults.read() {
            Ok(f) => f.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set_faults(self: &Arc<Self>, faults: Faults) {
        let down = faults.down;
        let down_for = faults.down_for;
        match self.faults.write() {
            Ok(mut f) => *f = faults,
            Err(poisoned) => *poisoned.into_inner() = faults,
        }
        self.down.send_replace(down);
        if let (true, Some(after)) = (down, down_for) {
            let state = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let mut f = state.faults();
                if f.down {
                    f.down = false;
                    f.down_for = None;
                    state.set_faults(f);
                }
            });
        }
    }

    pub fn stats(&self) -> SimStats {
        SimStats {
            requests: self.requests.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            rejected_capacity: self.rejected_capacity.load(Ordering::Relaxed),
            injected_errors: self.injected_errors.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
        }
    }
}

/// A running simulator. Dropping it stops it.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    stop: watch::Sender<bool>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a gateway is configured with: `http://addr/v1` for OpenAI (the version is
    /// part of its base), the API root for Anthropic and Gemini.
    pub fn base_url(&self) -> String {
        match self.state.config.protocol {
            SimProtocol::Openai => format!("http://{}/v1", self.addr),
            SimProtocol::Anthropic | SimProtocol::Gemini => format!("http://{}", self.addr),
        }
    }

    pub fn protocol(&self) -> SimProtocol {
        self.state.config.protocol
    }

    pub fn faults(&self) -> Faults {
        self.state.faults()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// Change faults in place: `sim.update(|f| f.down = true)`.
    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        let mut f = self.faults();
        change(&mut f);
        self.set_faults(f);
    }

    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// The highest in-flight count since the last call, reset to the current count.
    pub fn take_max_in_flight(&self) -> u32 {
        let now = self.state.in_flight.load(Ordering::Relaxed);
        self.state.max_in_flight.swap(now, Ordering::AcqRel)
    }

    /// The JSON body of the last request this simulator received.
    pub fn last_request(&self) -> Option<serde_json::Value> {
        let body = self.state.last_request.lock().ok()?.clone()?;
        serde_json::from_slice(&body).ok()
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Start a simulator on `listen` (port 0 picks a free port).
pub async fn start(listen: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (down, _) = watch::channel(config.faults.down);
    let state = Arc::new(SimState {
        faults: RwLock::new(config.faults.clone()),
        config,
        down,
        requests: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        rejected_capacity: AtomicU64::new(0),
        injected_errors: AtomicU64::new(0),
        in_flight: AtomicU32::new(0),
        max_in_flight: AtomicU32::new(0),
        last_request: std::sync::Mutex::new(None),
    });
    let (stop, _) = watch::channel(false);
    let app = router(Arc::clone(&state)).merge(control::router(Arc::clone(&state)));
    tokio::spawn(serve(
        listener,
        addr,
        app,
        Arc::clone(&state),
        stop.subscribe(),
    ));
    Ok(SimHandle { addr, state, stop })
}

/// Serve only the control API on its own address, so a hard-down simulator can be revived.
pub async fn start_control(listen: SocketAddr, handle: &SimHandle) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = control::router(Arc::clone(&handle.state));
    let stop = handle.stop.subscribe();
    tokio::spawn(async move {
        let mut stop = stop;
        tokio::select! {
            _ = axum::serve(listener, app) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    });
    Ok(addr)
}

fn router(state: Arc<SimState>) -> Router {
    match state.config.protocol {
        SimProtocol::Openai => openai::router(state),
        SimProtocol::Anthropic => anthropic::router(state),
        SimProtocol::Gemini => gemini::router(state),
    }
}

/// Accept loop that really refuses connections while the simulator is down: the listening
/// socket is closed (connect gets RST) and every open connection is dropped.
async fn serve(
    mut listener: TcpListener,
    addr: SocketAddr,
    app: Router,
    state: Arc<SimState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut down = state.down.subscribe();
    let mut listener_slot = Some(listener);
    loop {
        if *down.borrow_and_update() {
            listener_slot = None;
            tokio::select! {
                _ = down.wait_for(|d| !*d) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            continue;
        }
        listener = match listener_slot.take() {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "simulator could not listen again; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let stop_for_conn = stop.clone();
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    let svc = TowerToHyperService::new(app.clone());
                    let mut conn_down = state.down.subscribe();
                    let mut conn_stop = stop_for_conn;
                    tokio::spawn(async move {
                        let builder = Builder::new(TokioExecutor::new());
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        tokio::select! {
                            _ = conn => {}
                            _ = conn_down.wait_for(|d| *d) => {}
                            _ = conn_stop.wait_for(|s| *s) => {}
                        }
                    });
                }
                listener_slot = Some(listener);
            }
            _ = down.changed() => { listener_slot = Some(listener); }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
