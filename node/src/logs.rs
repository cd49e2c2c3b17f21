//! The process's latest warnings and errors, kept in memory for `GET /logs` (the dashboard's
//! "recent warnings" panel): a `tracing` layer beside the formatter, so the operator sees what
//! went wrong without reading the journal. Bounded: [`KEEP`] lines of at most [`MAX_LINE`]
//! bytes each (a warning may quote what a peer sent).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use ifx_protocols::api::{LogLine, RecentLogs};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Lines kept: a screenful for the panel.
pub const KEEP: usize = 64;
/// Longest message kept, in bytes (cut at a character boundary).
pub const MAX_LINE: usize = 512;

struct Recent {
    lines: Mutex<VecDeque<LogLine>>,
    total: AtomicU64,
}

fn recent_store() -> &'static Recent {
    static RECENT: OnceLock<Recent> = OnceLock::new();
    RECENT.get_or_init(|| Recent { lines: Mutex::new(VecDeque::with_capacity(KEEP)), total: AtomicU64::new(0) })
}

/// What the layer kept (empty where the process installed no [`Layer`]: a node in a test).
pub fn recent() -> RecentLogs {
    let r = recent_store();
    let lines = r.lines.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
    RecentLogs { lines, total: r.total.load(Ordering::Relaxed) }
}

/// The layer: keeps every event at WARN or ERROR that the log filter lets through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layer;

/// Writes `message` first, then the other fields as `key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let line = LogLine {
            unix_ms: crate::unix_time_us() / 1000,
            level: level.as_str().to_owned(),
            target: cut(event.metadata().target().to_owned(), 128),
            message: cut(f.message + &f.rest, MAX_LINE),
        };
        let r = recent_store();
        r.total.fetch_add(1, Ordering::Relaxed);
        let mut lines = r.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == KEEP {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn keeps_the_latest_warnings_and_errors_cut_to_size() {
        let subscriber = tracing_subscriber::registry().with(Layer);
        let before = recent().total;
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            for i in 0..KEEP {
                tracing::warn!(i, "filler");
            }
            tracing::warn!(peer = "12D3", n = 7, "slow peer");
            tracing::error!("{}", "é".repeat(400));
        });
        let r = recent();
        assert_eq!(r.total - before, KEEP as u64 + 2, "info is not kept, nor counted");
        assert_eq!(r.lines.len(), KEEP, "the oldest two went");
        assert_eq!(r.lines[0].message, "filler i=2");
        let warn = &r.lines[KEEP - 2];
        assert_eq!((warn.level.as_str(), warn.message.as_str()), ("WARN", "slow peer peer=12D3 n=7"));
        let error = &r.lines[KEEP - 1];
        assert_eq!((error.level.as_str(), error.message.len()), ("ERROR", MAX_LINE), "cut at a character boundary");
        assert_eq!(cut("aé".into(), 2), "a");
    }
}
