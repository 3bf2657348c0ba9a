//! Log output of the long-running commands (`serve`, `admission`): lines are formatted on the
//! request's thread and handed to one writer thread through a bounded queue, which writes them to
//! stderr in batches (a `BufWriter`, flushed whenever the queue runs empty).
//!
//! Why: with the access log on, every request writes a line. Writing it from the request's
//! thread took stderr's lock and one `write` per request on the async workers; measured on the
//! small-request paths (`bench/ab-small-get.sh` with `[log] access` off and on), that cost about
//! a third of the throughput. Nothing is dropped: when the queue is full, the logging thread
//! waits, as a blocking write to stderr did before.

use std::io::{BufWriter, IsTerminal};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines queued for the writer thread at most (a few MiB of typical lines).
const QUEUED_LINES: usize = 16_384;

/// Keeps the writer thread alive; dropping it writes out what is queued. Hold it until the
/// command returns.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// Installs the global subscriber: `filter`, in `format`, through the batching writer. Text lines
/// have untrusted values (user names, paths, image names) escaped, so they cannot forge lines
/// or send terminal escapes; JSON lines are escaped by serde_json.
pub fn init(filter: EnvFilter, format: LogFormat) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(false)
        .thread_name("wharf-log")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .fmt_fields(crate::escape::EscapedFields::default())
            .init(),
    }
    LogGuard(guard)
}
