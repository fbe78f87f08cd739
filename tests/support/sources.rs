//! Running the sources' poll tasks in a test.

use std::sync::Arc;

use hallmonitor::model::Reading;
use hallmonitor::sources::{SourceContext, SourceStats};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A context with fresh stats and cancel token whose readings go to the returned receiver
/// (`capacity` of them before the poll tasks wait); `once` polls each device once.
pub fn source_context(capacity: usize, once: bool) -> (SourceContext, mpsc::Receiver<Reading>) {
    let (tx, rx) = mpsc::channel(capacity);
    let ctx =
        SourceContext { readings: tx, stats: Arc::new(SourceStats::default()), cancel: CancellationToken::new(), once };
    (ctx, rx)
}

/// Every reading until the poll tasks end (they hold the senders), then the tasks' ends: a
/// task that panicked fails the test.
pub async fn readings_until_done(mut rx: mpsc::Receiver<Reading>, tasks: Vec<JoinHandle<()>>) -> Vec<Reading> {
    let mut out = Vec::new();
    while let Some(r) = rx.recv().await {
        out.push(r);
    }
    for t in tasks {
        t.await.expect("no poll task panicked");
    }
    out
}
