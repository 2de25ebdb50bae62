//! `mediabot inspect`: describe a Graph calling payload one line per item.

use super::{print_out, read_input};

/// Reads `input` (a file or `-`), detects its kind and prints one line per item.
pub(crate) fn run(input: &str) -> Result<(), String> {
    let text = read_input(input)?;
    let lines = graph_signaling::inspect::inspect(&text).map_err(|e| e.to_string())?;
    let mut out = lines.join("\n");
    out.push('\n');
    print_out(&out)
}
