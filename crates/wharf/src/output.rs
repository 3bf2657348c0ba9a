//! One way for every command to print records: `--output table|json` (`-o`). A table is one
//! record a line, tab-separated, nothing else on standard output (an empty result says so on
//! standard error, so `| wc -l` still counts records); JSON is one document: an array for a
//! list (`[]` when empty), an object for a single record. The same records whether the
//! command ran on a data directory or through `--server`.

use serde::Serialize;

/// Output format.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// Readable: one record a line, columns separated by tabs (`text` is the same).
    #[default]
    #[value(alias = "text")]
    Table,
    /// One JSON document.
    Json,
}

/// The `--output` flag, for `#[command(flatten)]`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct OutputArg {
    /// Output format: table (one record a line) or json (one document).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Prints `items`: a table of `row(item)` lines (or `no WHAT` on standard error when empty), or
/// a JSON array.
pub fn list<T: Serialize>(
    items: &[T],
    output: Output,
    what: &str,
    row: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(items)?),
        Output::Table if items.is_empty() => eprintln!("no {what}"),
        Output::Table => {
            let mut out = String::new();
            for i in items {
                out.push_str(&row(i));
                out.push('\n');
            }
            print!("{out}");
        }
    }
    Ok(())
}

/// Prints one record: `table` prints it readably, or it is printed as a JSON object.
pub fn record<T: Serialize>(
    item: &T,
    output: Output,
    table: impl FnOnce(&T) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match output {
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(item)?);
            Ok(())
        }
        Output::Table => table(item),
    }
}

/// Whether progress is drawn: on a terminal (standard error) and unless `quiet`.
pub fn shows_progress(quiet: bool) -> bool {
    !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// A byte progress bar on standard error with `what`, done/total, rate and time left (drawn
/// only on a terminal), or a hidden one when `quiet`.
pub fn bytes_bar(quiet: bool, total: u64, what: &str) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(total);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b.set_message(what.to_owned());
    b
}

/// The media type of a streamed answer ([`api::NDJSON`]).
pub use api::NDJSON;

/// The longest line of a streamed answer the CLI reads (a result line of a large retention run
/// names every deleted tag and manifest).
const MAX_NDJSON_LINE: usize = 16 << 20;

/// Reads a streamed answer (asked for with `Accept: application/x-ndjson`): passes each
/// progress line to `progress` and returns the result line's value. `what` names the call in
/// errors (`POST /api/v1/gc`). A server that answered plain JSON instead (one without
/// streaming) is read as that answer.
pub async fn read_ndjson(
    resp: reqwest::Response,
    what: &str,
    mut progress: impl FnMut(&serde_json::Value),
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    use futures_util::StreamExt as _;
    let streamed = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(NDJSON));
    if !streamed {
        let text = resp.text().await.with_context(|| what.to_owned())?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{what}: unexpected answer from the server"));
    }
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let mut v: serde_json::Value = serde_json::from_slice(&line)
                .with_context(|| format!("{what}: unexpected line from the server"))?;
            if let Some(r) = v.get_mut("result") {
                return Ok(r.take());
            }
            if let Some(e) = v.get("errors") {
                anyhow::bail!(
                    "{what}: {}",
                    e[0]["message"].as_str().unwrap_or("the operation failed")
                );
            }
            progress(&v);
        }
        match stream.next().await {
            Some(chunk) => {
                buf.extend_from_slice(&chunk.with_context(|| what.to_owned())?);
                anyhow::ensure!(
                    buf.len() <= MAX_NDJSON_LINE,
                    "{what}: a line of the answer is longer than {MAX_NDJSON_LINE} bytes"
                );
            }
            None => anyhow::bail!("{what}: the server ended the answer before the result"),
        }
    }
}

/// A progress bar on standard error for work in phases: the phase's name, then a bar with
/// done/total when the total is known, or a spinner with the count done when not. Drawn only
/// on a terminal; hidden when `quiet`. Clear it with [`PhaseBar::finish`] before printing the
/// result.
pub struct PhaseBar {
    bar: indicatif::ProgressBar,
    /// The phase shown, and whether its style is the counted bar.
    shown: Option<(String, bool)>,
}

impl PhaseBar {
    /// A bar with no phase yet (a spinner with `what`).
    pub fn new(quiet: bool, what: &str) -> PhaseBar {
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new_spinner()
        };
        bar.set_style(Self::style(false));
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        PhaseBar { bar, shown: None }
    }

    fn style(counted: bool) -> indicatif::ProgressStyle {
        if counted {
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ")
        } else {
            indicatif::ProgressStyle::with_template("{spinner} {msg} {pos} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
        }
    }

    /// Shows `phase` with `done` of `total` (a count without a bar when `None`).
    pub fn update(&mut self, phase: &str, done: u64, total: Option<u64>) {
        let counted = total.is_some();
        if self
            .shown
            .as_ref()
            .is_none_or(|(p, c)| p != phase || *c != counted)
        {
            self.bar.set_style(Self::style(counted));
            self.bar.set_message(phase.to_owned());
            self.shown = Some((phase.to_owned(), counted));
        }
        if let Some(t) = total {
            self.bar.set_length(t);
        }
        self.bar.set_position(done);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
