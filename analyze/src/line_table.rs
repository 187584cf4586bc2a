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
//!
//! gdb also leaves out rows when it builds its own line table, and whether
//! frame #0 shows its address depends on that table. gdb omits the address
//! when the pc is where a recorded row starts and a row recorded there is a
//! statement (`frame_show_address` in gdb's `stack.c`). [`StatementRows`]
//! keeps the start of every row gdb 13 records (`dwarf_record_line_p` in
//! gdb's `dwarf2/read.c`). gdb records a row when its file or line differs
//! from the previous one. It also records a repeated row of the same line
//! unless a row of that line had a non-zero discriminator. Rows at line 0
//! are not recorded.

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
    /// Each sequence's address range and the starts of its rows that gdb
    /// records, in address order.
    sequences: Vec<Sequence>,
}

/// One sequence of the line program.
#[derive(Debug, Default)]
struct Sequence {
    start: u64,
    end: u64,
    /// Each address where gdb records a row, with whether one of the rows
    /// recorded there is a statement.
    recorded: Vec<(u64, bool)>,
}

/// The state gdb keeps to decide whether a row is recorded.
#[derive(Debug, Default)]
struct RecordState {
    last: Option<(u64, u32)>,
    line_has_discriminator: bool,
}

impl RecordState {
    /// Returns whether gdb records `row`, and updates the state with it.
    fn record(&mut self, row: &Row, discriminator: u64) -> bool {
        if row.line == 0 {
            return false;
        }
        let changed = self.last != Some((row.file, row.line));
        if changed {
            self.line_has_discriminator = discriminator != 0;
        } else {
            self.line_has_discriminator |= discriminator != 0;
        }
        self.last = Some((row.file, row.line));
        changed || !self.line_has_discriminator
    }
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
        let mut sequence = Sequence::default();
        let mut started = false;
        let mut state = RecordState::default();
        while let Some((_, row)) = rows.next_row()? {
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            if row.end_sequence() {
                self.finish_group(&group);
                group.clear();
                sequence.end = row.address();
                if sequence.start < sequence.end {
                    self.sequences.push(std::mem::take(&mut sequence));
                }
                sequence = Sequence::default();
                started = false;
                state = RecordState::default();
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
            if !started {
                sequence.start = current.address;
                started = true;
            }
            if state.record(&current, row.discriminator()) {
                match sequence.recorded.last_mut() {
                    Some((address, is_stmt)) if *address == current.address => *is_stmt |= current.is_stmt,
                    _ => sequence.recorded.push((current.address, current.is_stmt)),
                }
            }
            if group.first().is_some_and(|first| first.address != current.address) {
                self.finish_group(&group);
                group.clear();
            }
            group.push(current);
        }
        self.finish_group(&group);
        self.sequences.sort_by_key(|sequence| sequence.start);
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

    /// Returns where the row of gdb's line table that contains `address`
    /// starts, when a statement row is recorded there. `None` when the row
    /// is not a statement or no sequence covers `address`.
    pub fn statement_start(&self, address: u64) -> Option<u64> {
        let after = self.sequences.partition_point(|sequence| sequence.start <= address);
        let sequence = self.sequences.get(after.checked_sub(1)?)?;
        if address >= sequence.end {
            return None;
        }
        let recorded = sequence.recorded.partition_point(|&(start, _)| start <= address);
        let (start, is_stmt) = *sequence.recorded.get(recorded.checked_sub(1)?)?;
        is_stmt.then_some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(address: u64, line: u32, is_stmt: bool) -> Row {
        Row { address, file: 1, line, column: None, is_stmt }
    }

    #[test]
    fn same_line_recorded_without_discriminators() {
        let mut state = RecordState::default();
        assert!(state.record(&row(0x10, 6, true), 0));
        assert!(state.record(&row(0x14, 6, false), 0));
        assert!(!state.record(&row(0x18, 0, false), 0));
    }

    #[test]
    fn same_line_merged_after_a_discriminator() {
        let mut state = RecordState::default();
        assert!(state.record(&row(0x10, 12, true), 3));
        assert!(!state.record(&row(0x17, 12, true), 0));
        assert!(state.record(&row(0x1c, 13, true), 0));
        assert!(state.record(&row(0x20, 13, true), 0));
        assert!(!state.record(&row(0x24, 13, true), 1));
    }

    #[test]
    fn only_statement_rows_start_a_line() {
        // The rows of a faulting `add` at 0x1247 (not a statement) and of
        // a line whose statement row repeats at 0x11ee, as gcc 12 -O2 wrote
        // them and gdb 13 showed their frame #0 lines.
        let rows = StatementRows {
            rows: HashMap::new(),
            sequences: vec![
                Sequence { start: 0x11e0, end: 0x11fb, recorded: vec![(0x11e0, true), (0x11e4, false), (0x11ee, true)] },
                Sequence { start: 0x1240, end: 0x1250, recorded: vec![(0x1240, true), (0x1247, false), (0x124f, false)] },
            ],
        };
        assert_eq!(rows.statement_start(0x11ee), Some(0x11ee));
        assert_eq!(rows.statement_start(0x11f0), Some(0x11ee));
        assert_eq!(rows.statement_start(0x11e5), None);
        assert_eq!(rows.statement_start(0x1247), None);
        assert_eq!(rows.statement_start(0x1242), Some(0x1240));
        assert_eq!(rows.statement_start(0x1250), None, "past the sequence");
        assert_eq!(rows.statement_start(0x1000), None, "before any sequence");
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
