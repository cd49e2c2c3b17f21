//! Every long-running task of a node, watched. A service that panics or returns while the node
//! is meant to run leaves the node half alive (gossip unvalidated, challenges unanswered); so
//! the first one to end stops the whole node, with a log line naming it, and the node's run
//! ends in an error (the process exits non-zero).

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// A service that ended while the node was meant to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {service} service {how}: the node stopped")]
pub struct ServiceFailed {
    pub service: &'static str,
    pub how: String,
}

/// The node's tasks, by name.
#[derive(Default)]
pub struct Services {
    set: JoinSet<()>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl Services {
    /// Runs `task` as the service `name`.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Watches the services and the network task until `shutdown` is cancelled, or until one
    /// of them ends first: then logs it, cancels `shutdown` and reports it. Either way returns
    /// once every service has ended, then the network task (the network stops last, so it
    /// saves the peers the others knew).
    pub async fn supervise(
        mut self,
        mut network: JoinHandle<()>,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceFailed> {
        let mut failed = None;
        let mut network_done = false;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {}
            r = &mut network => {
                network_done = true;
                failed = Some(ServiceFailed { service: "network", how: how(r.err()) });
            }
            Some(r) = self.set.join_next_with_id() => {
                let (id, e) = match r {
                    Ok((id, ())) => (id, None),
                    Err(e) => (e.id(), Some(e)),
                };
                failed = Some(ServiceFailed { service: self.name(id), how: how(e) });
            }
        }
        if let Some(f) = &failed {
            error!(service = f.service, how = %f.how, "a node service ended while the node was running: stopping the node");
            shutdown.cancel();
        }
        while let Some(r) = self.set.join_next_with_id().await {
            if let Err(e) = r
                && e.is_panic()
            {
                let f = ServiceFailed { service: self.name(e.id()), how: how(Some(e)) };
                error!(service = f.service, how = %f.how, "a node service panicked while stopping");
                failed.get_or_insert(f);
            }
        }
        if !network_done && let Err(e) = network.await {
            failed.get_or_insert(ServiceFailed { service: "network", how: how(Some(e)) });
        }
        failed.map_or(Ok(()), Err)
    }

    fn name(&self, id: tokio::task::Id) -> &'static str {
        self.names.get(&id).copied().unwrap_or("unnamed")
    }
}

/// How a task ended: returned, panicked (with the message), or was cancelled.
fn how(e: Option<JoinError>) -> String {
    match e {
        None => "returned".into(),
        Some(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            format!("panicked: {msg}")
        }
        Some(_) => "was cancelled".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn quiet_network(shutdown: &CancellationToken) -> JoinHandle<()> {
        let s = shutdown.clone();
        tokio::spawn(async move { s.cancelled().await })
    }

    #[tokio::test]
    async fn a_panicking_service_stops_the_node_and_is_named() {
        let shutdown = CancellationToken::new();
        let mut s = Services::default();
        let (a, b) = (shutdown.clone(), shutdown.clone());
        s.spawn("router", async move { a.cancelled().await });
        s.spawn("heartbeats", async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let seq: u64 = std::hint::black_box(u64::MAX);
            let _ = seq.checked_add(1).expect("a peer's sequence number overflowed");
            b.cancelled().await;
        });
        let network = quiet_network(&shutdown);
        let r = tokio::time::timeout(Duration::from_secs(5), s.supervise(network, shutdown.clone())).await.unwrap();
        let f = r.unwrap_err();
        assert_eq!(f.service, "heartbeats");
        assert!(f.how.contains("panicked: a peer's sequence number overflowed"), "{f}");
        assert!(shutdown.is_cancelled(), "the other services were told to stop");
    }

    #[tokio::test]
    async fn a_service_that_returns_early_stops_the_node() {
        let shutdown = CancellationToken::new();
        let mut s = Services::default();
        let a = shutdown.clone();
        s.spawn("api", async move { a.cancelled().await });
        s.spawn("sync", async {});
        let f = s.supervise(quiet_network(&shutdown), shutdown.clone()).await.unwrap_err();
        assert_eq!((f.service, f.how.as_str()), ("sync", "returned"));
    }

    #[tokio::test]
    async fn a_requested_stop_is_clean_and_waits_for_everyone() {
        let shutdown = CancellationToken::new();
        let mut s = Services::default();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, d) = (shutdown.clone(), done.clone());
        s.spawn("router", async move {
            a.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let network = quiet_network(&shutdown);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.cancel();
        });
        assert_eq!(s.supervise(network, shutdown).await, Ok(()));
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn the_network_task_ending_first_stops_the_node() {
        let shutdown = CancellationToken::new();
        let mut s = Services::default();
        let a = shutdown.clone();
        s.spawn("router", async move { a.cancelled().await });
        let network = tokio::spawn(async { panic!("swarm poisoned") });
        let f = s.supervise(network, shutdown).await.unwrap_err();
        assert_eq!(f.service, "network");
        assert!(f.how.contains("swarm poisoned"));
    }
}
