//! Row 1: the binary's size, and whether it is static (no PT_INTERP).

use super::Bench;
use crate::report::{Cell, Row, Unit};

/// Size and linkage of each init's executable.
pub fn measure(bench: &mut Bench) -> Vec<Row> {
    let mut size = Vec::new();
    let mut linkage = Vec::new();
    for index in 0..bench.inits.len() {
        match bench.inits[index].size_bytes() {
            Ok(bytes) => size.push(Cell::Value(bytes as f64)),
            Err(err) => {
                bench.fail(index, "binary size", &err);
                size.push(Cell::Failed);
            }
        }
        match bench.inits[index].is_static() {
            Ok(is_static) => linkage.push(Cell::Text(
                if is_static { "static" } else { "dynamic" }.to_owned(),
            )),
            Err(err) => {
                bench.fail(index, "ELF program headers", &err);
                linkage.push(Cell::Failed);
            }
        }
    }
    vec![
        Row {
            label: "binary size".to_owned(),
            unit: Unit::Bytes,
            cells: size,
        },
        Row {
            label: "linkage (PT_INTERP)".to_owned(),
            unit: Unit::Count,
            cells: linkage,
        },
    ]
}
