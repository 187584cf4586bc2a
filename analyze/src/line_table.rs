//! Statement rows of the DWARF line table, for choosing the line gdb shows.
//!
//! gcc can emit several rows at one address, for example the line of an
//! inlined function's `asm` statement marked as a statement (`is_stmt`)
//! followed by the next line not marked as one. addr2line reports the last
//! row at an address. gdb 13 reports the nearest earlier row at the same
//! address that is a statement (seen on the Xen lab's crashed guests), which
//! is where a breakpoint on the line would stop. [`StatementRows`]
//! records, for each address where the two differ, the line gdb shows, so
//! that stardump prints the same line.

use std::collections::HashMap;

use crate::image::DwarfReader;

/// Upper bound on the rows read from one line program, so a damaged or
/// huge program cannot make a lookup run without end.
const MAX_ROWS: usize = 50_000_000;

/// The line and column of a statement row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementRow {
    /// Source line.
    pub line: u32,
    /// Source column, when the row has one.
    pub column: Option<u32>,
}

/// Addresses whose last line-table row is not a statement, mapped to the
/// nearest earlier statement row at the same address in the same file.
#[derive(Debug, Default)]
pub struct StatementRows {
    rows: HashMap<u64, StatementRow>,
}

/// One row as far as the choice needs it.
#[derive(Debug, Clone, Copy)]
struct Row {
    address: u64,
    file: u64,
    line: u32,
    column: Option<u32>,
    is_stmt: bool,
}

impl StatementRows {
    /// Reads the line program of `unit`. A damaged program is logged at
    /// debug level, and the rows read before the damage are kept.
    pub fn load_unit(unit: &gimli::Unit<DwarfReader>) -> StatementRows {
        let mut result = StatementRows::default();
        let Some(program) = unit.line_program.clone() else { return result };
        let mut budget = MAX_ROWS;
        if let Err(error) = result.add_program(program, &mut budget) {
            tracing::debug!(%error, offset = ?unit.header.offset(), "stopped reading a line program for statement rows");
        }
        if budget == 0 {
            tracing::debug!(offset = ?unit.header.offset(), "row limit reached while reading statement rows");
        }
        result
    }

    fn add_program(
        &mut self,
        program: gimli::IncompleteLineProgram<DwarfReader>,
        budget: &mut usize,
    ) -> gimli::Result<()> {
        let mut rows = program.rows();
        // The rows at the current address, in table order.
        let mut group: Vec<Row> = Vec::new();
        while let Some((_, row)) = rows.next_row()? {
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            if row.end_sequence() {
                self.finish_group(&group);
                group.clear();
                continue;
            }
            let current = Row {
                address: row.address(),
                file: row.file_index(),
                line: row.line().map_or(0, |line| u32::try_from(line.get()).unwrap_or(u32::MAX)),
                column: match row.column() {
                    gimli::ColumnType::LeftEdge => None,
                    gimli::ColumnType::Column(column) => u32::try_from(column.get()).ok(),
                },
                is_stmt: row.is_stmt(),
            };
            if group.first().is_some_and(|first| first.address != current.address) {
                self.finish_group(&group);
                group.clear();
            }
            group.push(current);
        }
        self.finish_group(&group);
        Ok(())
    }

    /// Records the statement row gdb would pick at one address, when it is
    /// not the last row there.
    fn finish_group(&mut self, group: &[Row]) {
        let Some(last) = group.last() else { return };
        if last.is_stmt {
            return;
        }
        let statement = group[..group.len() - 1]
            .iter()
            .rev()
            .find(|row| row.is_stmt && row.file == last.file);
        if let Some(row) = statement {
            if row.line != last.line || row.column != last.column {
                self.rows.insert(last.address, StatementRow { line: row.line, column: row.column });
            }
        }
    }

    /// Returns the statement row gdb shows for the row starting at
    /// `row_address`, when it differs from the last row there.
    pub fn get(&self, row_address: u64) -> Option<StatementRow> {
        self.rows.get(&row_address).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(address: u64, line: u32, is_stmt: bool) -> Row {
        Row { address, file: 1, line, column: None, is_stmt }
    }

    #[test]
    fn statement_row_before_non_statement() {
        let mut rows = StatementRows::default();
        rows.finish_group(&[row(0x10, 171, true), row(0x10, 172, false)]);
        assert_eq!(rows.get(0x10), Some(StatementRow { line: 171, column: None }));
    }

    #[test]
    fn last_row_statement_kept() {
        let mut rows = StatementRows::default();
        rows.finish_group(&[row(0x10, 171, false), row(0x10, 172, true)]);
        assert_eq!(rows.get(0x10), None);
    }

    #[test]
    fn other_file_not_taken() {
        let mut rows = StatementRows::default();
        let mut other = row(0x10, 171, true);
        other.file = 2;
        rows.finish_group(&[other, row(0x10, 172, false)]);
        assert_eq!(rows.get(0x10), None);
    }
}
