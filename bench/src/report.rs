//! The markdown table: rows × inits, each figure with its ratio to the best peer.

use std::fmt::Write;

/// How a row's numbers are printed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    /// Bytes, printed in KiB or MiB.
    Bytes,
    /// Nanoseconds, printed in ns, µs, ms or s.
    Nanos,
    /// A plain count.
    Count,
}

/// One init's entry in a row.
#[derive(Clone, Debug)]
pub enum Cell {
    /// A measured figure, compared with the best peer's.
    Value(f64),
    /// A measured figure compared with a baseline of the same row instead (the baseline is
    /// not an init, so it has no column: the row's label quotes it).
    AgainstBaseline {
        /// The figure.
        value: f64,
        /// What it is divided by for the ratio.
        baseline: f64,
    },
    /// A fact printed as it is (static or not; "none" for a feature a peer lacks).
    Text(String),
    /// The measurement failed for this init (the error is in the notes).
    Failed,
}

/// A measurement across every init.
#[derive(Clone, Debug)]
pub struct Row {
    /// What is measured, as the first column says it.
    pub label: String,
    /// The unit of the row's values.
    pub unit: Unit,
    /// One cell per init, in the table's column order.
    pub cells: Vec<Cell>,
}

/// The whole report.
pub struct Table {
    /// Column headings (init names) and whether each is grace (the build under test or a release of it:
    /// neither is a peer).
    pub columns: Vec<(String, bool)>,
    /// The rows, in the order they are printed.
    pub rows: Vec<Row>,
    /// Columns (grace, its release) compared in a last column, `grace ÷ 0.2`: a regression shows as a
    /// ratio above 1 the day it happens.
    pub versus: Option<(usize, usize)>,
}

impl Table {
    /// Renders the table as markdown. The ratio is value ÷ the best (lowest) peer value, so
    /// the best peer reads 1.00× and anything above it is worse.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("| |");
        for (name, _) in &self.columns {
            let _ = write!(out, " {name} |");
        }
        let versus = self.versus.and_then(|(grace, release)| {
            let name = |index: usize| self.columns.get(index).map(|(name, _)| name.clone());
            Some((
                grace,
                release,
                format!("{} ÷ {}", name(grace)?, name(release)?),
            ))
        });
        if let Some((_, _, heading)) = &versus {
            let _ = write!(out, " {heading} |");
        }
        out.push_str("\n| --- |");
        for _ in 0..self.columns.len() + usize::from(versus.is_some()) {
            out.push_str(" --- |");
        }
        out.push('\n');
        for row in &self.rows {
            let best_peer = row
                .cells
                .iter()
                .zip(&self.columns)
                .filter(|(_, (_, is_grace))| !is_grace)
                .filter_map(|(cell, _)| match cell {
                    Cell::Value(value) => Some(*value),
                    _ => None,
                })
                .reduce(f64::min);
            let _ = write!(out, "| {} |", row.label);
            for cell in &row.cells {
                let text = match cell {
                    Cell::Value(value) => {
                        let figure = format_value(*value, row.unit);
                        match best_peer.and_then(|best| ratio(*value, best)) {
                            Some(ratio) => format!("{figure} ({ratio})"),
                            None => figure,
                        }
                    }
                    Cell::AgainstBaseline { value, baseline } => {
                        let figure = format_value(*value, row.unit);
                        match ratio(*value, *baseline) {
                            Some(ratio) => format!("{figure} ({ratio})"),
                            None => figure,
                        }
                    }
                    Cell::Text(text) => text.clone(),
                    Cell::Failed => "failed".to_owned(),
                };
                let _ = write!(out, " {text} |");
            }
            if let Some((grace, release, _)) = &versus {
                let value = |index: usize| match row.cells.get(index) {
                    Some(Cell::Value(value) | Cell::AgainstBaseline { value, .. }) => Some(*value),
                    _ => None,
                };
                let text = match (value(*grace), value(*release)) {
                    (Some(value), Some(before)) => {
                        ratio(value, before).unwrap_or_else(|| "—".to_owned())
                    }
                    _ => "—".to_owned(),
                };
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        out
    }
}

/// `value / best` as `1.23×`; none when the best is not positive (a zero count, a start-up
/// difference lost in noise), except that equal values still read 1.00×.
fn ratio(value: f64, best: f64) -> Option<String> {
    if best > 0.0 {
        Some(format!("{:.2}×", value / best))
    } else if value == best {
        Some("1.00×".to_owned())
    } else {
        None
    }
}

/// Three significant figures in a fitting unit.
pub fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes if value.abs() >= 1024.0 * 1024.0 => {
            format!("{} MiB", significant(value / (1024.0 * 1024.0)))
        }
        Unit::Bytes => format!("{} KiB", significant(value / 1024.0)),
        Unit::Nanos => {
            let magnitude = value.abs();
            if magnitude >= 1e9 {
                format!("{} s", significant(value / 1e9))
            } else if magnitude >= 1e6 {
                format!("{} ms", significant(value / 1e6))
            } else if magnitude >= 1e3 {
                format!("{} µs", significant(value / 1e3))
            } else {
                format!("{value:.0} ns")
            }
        }
        Unit::Count if value.fract() == 0.0 => format!("{value:.0}"),
        Unit::Count => format!("{value:.1}"),
    }
}

/// Three significant digits (but no decimals past the units for values ≥ 100).
fn significant(value: f64) -> String {
    let magnitude = value.abs();
    let decimals = if magnitude >= 100.0 || magnitude == 0.0 {
        0
    } else if magnitude >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}")
}

/// Today's date (UTC) as YYYY-MM-DD, without a date crate.
pub fn today() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The kernel release and the CPU model, for the header line.
pub fn machine() -> (String, String) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    (kernel, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_in_fitting_units() {
        assert_eq!(format_value(862_000.0, Unit::Nanos), "862 µs");
        assert_eq!(format_value(1_234_000.0, Unit::Nanos), "1.23 ms");
        assert_eq!(format_value(-52_300.0, Unit::Nanos), "-52.3 µs");
        assert_eq!(format_value(950.0, Unit::Nanos), "950 ns");
        assert_eq!(format_value(12.0 * 1024.0, Unit::Bytes), "12.0 KiB");
        assert_eq!(format_value(3.5 * 1024.0 * 1024.0, Unit::Bytes), "3.50 MiB");
        assert_eq!(format_value(10.0, Unit::Count), "10");
        assert_eq!(format_value(10.5, Unit::Count), "10.5");
    }

    #[test]
    fn ratios_compare_with_the_best_peer() {
        assert_eq!(ratio(30.0, 10.0).as_deref(), Some("3.00×"));
        assert_eq!(ratio(0.0, 0.0).as_deref(), Some("1.00×"));
        assert_eq!(ratio(5.0, 0.0), None);
        assert_eq!(ratio(5.0, -1.0), None);
    }

    #[test]
    fn table_marks_the_best_peer_as_one() {
        let table = Table {
            columns: vec![
                ("grace".into(), true),
                ("tini".into(), false),
                ("catatonit".into(), false),
            ],
            rows: vec![Row {
                label: "size".into(),
                unit: Unit::Count,
                cells: vec![Cell::Value(5.0), Cell::Value(20.0), Cell::Value(10.0)],
            }],
            versus: None,
        };
        let markdown = table.to_markdown();
        assert!(
            markdown.contains("| size | 5 (0.50×) | 20 (2.00×) | 10 (1.00×) |"),
            "{markdown}"
        );
    }

    #[test]
    fn a_baseline_cell_is_compared_with_its_own_baseline() {
        let table = Table {
            columns: vec![("grace".into(), true), ("tini".into(), false)],
            rows: vec![Row {
                label: "last death".into(),
                unit: Unit::Nanos,
                cells: vec![
                    Cell::AgainstBaseline {
                        value: 220e6,
                        baseline: 200e6,
                    },
                    Cell::Value(1e6),
                ],
            }],
            versus: None,
        };
        let markdown = table.to_markdown();
        assert!(
            markdown.contains("| last death | 220 ms (1.10×) | 1.00 ms (1.00×) |"),
            "{markdown}"
        );
    }

    #[test]
    fn the_release_column_compares_grace_with_its_release_and_is_no_peer() {
        let table = Table {
            columns: vec![
                ("grace".into(), true),
                ("grace 0.2".into(), true),
                ("tini".into(), false),
            ],
            rows: vec![
                Row {
                    label: "rss".into(),
                    unit: Unit::Count,
                    cells: vec![Cell::Value(30.0), Cell::Value(60.0), Cell::Value(40.0)],
                },
                Row {
                    label: "text".into(),
                    unit: Unit::Count,
                    cells: vec![Cell::Value(1.0), Cell::Text("—".into()), Cell::Value(1.0)],
                },
            ],
            versus: Some((0, 1)),
        };
        let markdown = table.to_markdown();
        assert!(
            markdown.contains("| | grace | grace 0.2 | tini | grace ÷ grace 0.2 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| --- | --- | --- | --- | --- |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| rss | 30 (0.75×) | 60 (1.50×) | 40 (1.00×) | 0.50× |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| text | 1 (1.00×) | — | 1 (1.00×) | — |"),
            "{markdown}"
        );
    }

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }
}
