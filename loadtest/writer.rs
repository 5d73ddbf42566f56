//! The harness's own PostgreSQL connection, on a glommio executor of its own thread: it
//! makes each change and stamps its commit on the host's monotonic clock.

use glommio::{LocalExecutorBuilder, Placement};
use postrust::pg::{Client, ConnectConfig, ConnectOptions};

use crate::stats::now_ns;

/// Sends change numbers to the writer thread and gets commit times back.
pub struct Writer {
    /// Coordinator sends `k`; the writer thread answers on `done`. One at a time.
    requests: flume::Sender<u64>,
    done: flume::Receiver<Result<u64, String>>,
}

impl Writer {
    /// Connects to `url`; every change runs `sql` with `$1` = the change number.
    pub fn start(url: &str, sql: &'static str) -> Result<Writer, String> {
        let config = ConnectConfig::from_url(url).map_err(|e| e.to_string())?;
        let (requests, incoming) = flume::unbounded::<u64>();
        let (answers, done) = flume::unbounded::<Result<u64, String>>();
        let (ready_tx, ready_rx) = flume::bounded::<Result<(), String>>(1);
        LocalExecutorBuilder::new(Placement::Unbound)
            .name("loadtest-writer")
            .io_memory(128 * 1024)
            .spawn(move || async move {
                let client = match Client::connect(&config, &ConnectOptions::default()).await {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                while let Ok(k) = incoming.recv_async().await {
                    let value = k.to_string();
                    let result = client
                        .execute(sql, &[Some(value.as_str())])
                        .await
                        .map(|_| now_ns())
                        .map_err(|e| e.to_string());
                    if answers.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        ready_rx.recv().map_err(|e| e.to_string())??;
        Ok(Writer { requests, done })
    }

    /// Commits change `k`; returns the monotonic time right after the commit returned.
    pub fn change(&self, k: u64) -> Result<u64, String> {
        self.requests.send(k).map_err(|e| e.to_string())?;
        self.done.recv().map_err(|e| e.to_string())?
    }
}
