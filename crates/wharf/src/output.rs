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

/// A spinner with `msg` and the elapsed time on standard error, for work whose progress is
/// not known (a server-side collection, a warm-up): only on a terminal and unless `quiet`.
/// Clear it with `finish_and_clear` before printing the result.
pub fn spinner(msg: impl Into<String>, quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let b = indicatif::ProgressBar::new_spinner();
    b.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    b.set_message(msg.into());
    b.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(b)
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
