//! The usage ledger writer: rows go through a bounded channel to one task that writes them in
//! batches (one transaction each), every `batch_size` rows or `flush_interval`. Closing the
//! ledger (graceful shutdown) writes every row still queued; a hard kill loses the rows not
//! yet written, at most one flush interval's worth (see docs/architecture.md).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use outlast_store::Db;
use outlast_store::usage::UsageRow;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub(crate) struct Ledger {
    tx: Mutex<Option<mpsc::Sender<UsageRow>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// Rows dropped because the queue was full or the ledger closed.
    pub(crate) dropped: AtomicU64,
    pub(crate) written: std::sync::Arc<AtomicU64>,
}

impl Ledger {
    pub(crate) fn start(db: Db, config: &outlast_config::Usage) -> Self {
        let (tx, mut rx) = mpsc::channel::<UsageRow>(config.max_pending);
        let batch_size = config.batch_size;
        let interval = config.flush_interval;
        let written = std::sync::Arc::new(AtomicU64::new(0));
        let counter = std::sync::Arc::clone(&written);
        let task =
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(batch_size);
                loop {
                    let closed =
                        match tokio::time::timeout(interval, rx.recv_many(&mut batch, batch_size))
                            .await
                        {
                            Ok(0) => true,
                            Ok(_) => false,
                            Err(_) => false,
                        };
                    // Take what else is already queued, up to a batch.
                    while batch.len() < batch_size {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() {
                        let n = batch.len() as u64;
                        match db.insert_usage(&batch).await {
                            Ok(()) => {
                                counter.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(e) => {
                                tracing::error!(error = %e, rows = n, "could not write usage rows")
                            }
                        }
                        batch.clear();
                    }
                    if closed {
                        break;
                    }
                }
            });
        Self {
            tx: Mutex::new(Some(tx)),
            task: tokio::sync::Mutex::new(Some(task)),
            dropped: AtomicU64::new(0),
            written,
        }
    }

    pub(crate) fn record(&self, row: UsageRow) {
        let sent = self
            .tx
            .lock()
            .ok()
            .and_then(|tx| tx.as_ref().map(|tx| tx.try_send(row).is_ok()))
            .unwrap_or(false);
        if !sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stop taking rows and write every queued one.
    pub(crate) async fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}
