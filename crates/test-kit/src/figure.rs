//! Asserted figures, recorded for the flake check.
//!
//! One line per figure, appended to the file named by `MEDIABOT_FIGURES`:
//! `<test>\t<figure>\t<value>\t<bound>\t<min|max>` where `min` means the value must stay at or
//! above the bound and `max` at or below it. The test is named by its thread (libtest names each
//! test's thread after the test), so call these from the test's body, not from a spawned task.

use std::io::Write;

/// The variable naming the file figures are appended to.
pub const FIGURES_VAR: &str = "MEDIABOT_FIGURES";

/// Which side of the bound a figure must stay on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The value must be at least the bound.
    AtLeast,
    /// The value must be at most the bound.
    AtMost,
}

impl Bound {
    fn tag(self) -> &'static str {
        match self {
            Bound::AtLeast => "min",
            Bound::AtMost => "max",
        }
    }

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Bound::AtLeast => value >= bound,
            Bound::AtMost => value <= bound,
        }
    }
}

/// Asserts `value >= floor` and records the figure. `context` is printed on failure.
#[track_caller]
pub fn at_least(
    name: &str,
    value: impl Into<f64>,
    floor: impl Into<f64>,
    context: &dyn std::fmt::Debug,
) {
    check(name, value.into(), floor.into(), Bound::AtLeast, context);
}

/// Asserts `value <= ceiling` and records the figure. `context` is printed on failure.
#[track_caller]
pub fn at_most(
    name: &str,
    value: impl Into<f64>,
    ceiling: impl Into<f64>,
    context: &dyn std::fmt::Debug,
) {
    check(name, value.into(), ceiling.into(), Bound::AtMost, context);
}

#[track_caller]
fn check(name: &str, value: f64, bound: f64, side: Bound, context: &dyn std::fmt::Debug) {
    record(name, value, bound, side);
    assert!(
        side.holds(value, bound),
        "{name} = {value} is not {} {bound}: {context:?}",
        match side {
            Bound::AtLeast => ">=",
            Bound::AtMost => "<=",
        }
    );
}

/// Appends one figure line when `MEDIABOT_FIGURES` is set; a write failure is ignored (the
/// figure file is a report, not part of the test's verdict).
pub fn record(name: &str, value: f64, bound: f64, side: Bound) {
    let Some(path) = std::env::var_os(FIGURES_VAR) else {
        return;
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let line = format_line(test, name, value, bound, side);
    // One write of a short line to a file opened for appending: lines of tests running in
    // parallel do not interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

fn format_line(test: &str, name: &str, value: f64, bound: f64, side: Bound) -> String {
    format!("{test}\t{name}\t{value}\t{bound}\t{}\n", side.tag())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_line_names_test_figure_value_bound_and_side() {
        assert_eq!(
            format_line("calls::x", "similarity", 0.93, 0.8, Bound::AtLeast),
            "calls::x\tsimilarity\t0.93\t0.8\tmin\n"
        );
        assert_eq!(
            format_line("t", "delay_ms", 120.0, 300.0, Bound::AtMost),
            "t\tdelay_ms\t120\t300\tmax\n"
        );
    }

    #[test]
    fn bounds_hold_on_their_side_only() {
        assert!(Bound::AtLeast.holds(1.0, 1.0) && !Bound::AtLeast.holds(0.9, 1.0));
        assert!(Bound::AtMost.holds(1.0, 1.0) && !Bound::AtMost.holds(1.1, 1.0));
    }

    #[test]
    #[should_panic(expected = "similarity = 0.5 is not >= 0.8")]
    fn a_figure_past_its_bound_fails_the_test() {
        at_least("similarity", 0.5, 0.8, &"ctx");
    }
}
