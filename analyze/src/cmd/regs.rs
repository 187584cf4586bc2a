//! `stardump regs`: every vCPU's registers, laid out like gdb's
//! `info registers`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use stardump_format::{Target, VcpuState};

use super::{hex, open_target, Outcome, JSON_SCHEMA_VERSION};

/// Arguments of `stardump regs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot file.
    pub file: PathBuf,
    /// The vCPU or thread to read.
    #[command(flatten)]
    pub selection: Selection,
    /// Print JSON (schema in analyze/JSON.md) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The vCPU or thread a command reads. Without one, a command reads all of
/// them, or the first when it reads one frame.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Selection {
    /// The vCPU with this id, from 0.
    #[arg(long, conflicts_with_all = ["thread", "lwp"])]
    pub vcpu: Option<u32>,
    /// Thread N, numbered from 1 as the `Thread N` lines show (gdb's
    /// `thread N`).
    #[arg(long, conflicts_with = "lwp")]
    pub thread: Option<u32>,
    /// For a Linux process: the thread with this Linux thread id.
    #[arg(long)]
    pub lwp: Option<u64>,
}

impl Selection {
    /// Returns whether the selection names a vCPU or thread.
    pub fn is_some(&self) -> bool {
        self.vcpu.is_some() || self.thread.is_some() || self.lwp.is_some()
    }
}

/// Format of a register's second column, as gdb prints the type that
/// QEMU's target description gives the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Natural {
    /// Signed decimal (`int64_t`).
    Decimal,
    /// Hex again (pointers: rbp, rsp, rip).
    Pointer,
    /// Names of the set flags.
    Flags(&'static [(u32, &'static str)]),
    /// cr3's page directory base and PCID.
    Cr3,
}

/// RFLAGS bits as gdb's `i386_eflags` type names them.
const EFLAGS: &[(u32, &str)] = &[
    (0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"), (10, "DF"),
    (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"), (18, "AC"), (19, "VIF"), (20, "VIP"), (21, "ID"),
];

/// CR0 bits, named as in QEMU's x86_64 target description.
const CR0: &[(u32, &str)] = &[
    (0, "PE"), (1, "MP"), (2, "EM"), (3, "TS"), (4, "ET"), (5, "NE"), (16, "WP"), (18, "AM"),
    (29, "NW"), (30, "CD"), (31, "PG"),
];

/// CR4 bits, named as in QEMU's x86_64 target description.
const CR4: &[(u32, &str)] = &[
    (0, "VME"), (1, "PVI"), (2, "TSD"), (3, "DE"), (4, "PSE"), (5, "PAE"), (6, "MCE"), (7, "PGE"),
    (8, "PCE"), (9, "OSFXSR"), (10, "OSXMMEXCPT"), (11, "UMIP"), (12, "LA57"), (13, "VMXE"),
    (14, "SMXE"), (16, "FSGSBASE"), (17, "PCIDE"), (18, "OSXSAVE"), (20, "SMEP"), (21, "SMAP"),
    (22, "PKE"),
];

/// EFER bits, named as in QEMU's x86_64 target description.
const EFER: &[(u32, &str)] = &[(0, "SCE"), (8, "LME"), (10, "LMA"), (11, "NXE"), (12, "SVME"), (13, "LMSLE"), (14, "FFXSR"), (15, "TCE")];

/// One register with its value and how to show it.
struct Register {
    name: &'static str,
    value: u64,
    natural: Natural,
}

/// Lists the registers `vcpu` has, in gdb's order.
fn registers(vcpu: &VcpuState) -> Vec<Register> {
    use Natural::*;
    let mut list = Vec::new();
    let mut push = |name, value, natural| list.push(Register { name, value, natural });
    if vcpu.present.general {
        for (name, value, natural) in [
            ("rax", vcpu.rax, Decimal), ("rbx", vcpu.rbx, Decimal), ("rcx", vcpu.rcx, Decimal),
            ("rdx", vcpu.rdx, Decimal), ("rsi", vcpu.rsi, Decimal), ("rdi", vcpu.rdi, Decimal),
            ("rbp", vcpu.rbp, Pointer), ("rsp", vcpu.rsp, Pointer), ("r8", vcpu.r8, Decimal),
            ("r9", vcpu.r9, Decimal), ("r10", vcpu.r10, Decimal), ("r11", vcpu.r11, Decimal),
            ("r12", vcpu.r12, Decimal), ("r13", vcpu.r13, Decimal), ("r14", vcpu.r14, Decimal),
            ("r15", vcpu.r15, Decimal), ("rip", vcpu.rip, Pointer), ("eflags", vcpu.rflags, Flags(EFLAGS)),
            ("cs", vcpu.cs.into(), Decimal), ("ss", vcpu.ss.into(), Decimal), ("ds", vcpu.ds.into(), Decimal),
            ("es", vcpu.es.into(), Decimal), ("fs", vcpu.fs.into(), Decimal), ("gs", vcpu.gs.into(), Decimal),
        ] {
            push(name, value, natural);
        }
    }
    if vcpu.present.segment_bases {
        push("fs_base", vcpu.fs_base, Decimal);
        push("gs_base", vcpu.gs_base, Decimal);
        push("k_gs_base", vcpu.kernel_gs_base, Decimal);
    }
    if vcpu.present.control {
        push("cr0", vcpu.cr0, Flags(CR0));
        push("cr2", vcpu.cr2, Decimal);
        push("cr3", vcpu.cr3, Cr3);
        push("cr4", vcpu.cr4, Flags(CR4));
        push("cr8", vcpu.cr8, Decimal);
        push("efer", vcpu.efer, Flags(EFER));
    }
    list
}

/// Names of the bits of `value` set in `table`, lowest bit first.
fn flag_names(value: u64, table: &[(u32, &'static str)]) -> Vec<&'static str> {
    table.iter().filter(|(bit, _)| value >> bit & 1 == 1).map(|(_, name)| *name).collect()
}

fn natural_text(register: &Register) -> String {
    match register.natural {
        Natural::Decimal => (register.value as i64).to_string(),
        Natural::Pointer => hex(register.value),
        Natural::Flags(table) => {
            let mut text = String::from("[ ");
            for name in flag_names(register.value, table) {
                text.push_str(name);
                text.push(' ');
            }
            text.push(']');
            text
        }
        // Bits 12 and up hold the page directory base, bits 0-11 the PCID
        // when CR4.PCIDE is set.
        Natural::Cr3 => format!("[ PDBR={} PCID={} ]", register.value >> 12, register.value & 0xfff),
    }
}

/// One vCPU's registers in the JSON report.
#[derive(Debug, Serialize)]
struct VcpuRegisters {
    vcpu: u32,
    registers: BTreeMap<&'static str, String>,
    flags: BTreeMap<&'static str, Vec<&'static str>>,
}

#[derive(Debug, Serialize)]
struct RegsReport {
    schema_version: u32,
    command: &'static str,
    snapshot: String,
    warnings: Vec<String>,
    vcpus: Vec<VcpuRegisters>,
}

/// Returns the vCPUs `selection` picks from `vcpus`, or an error naming
/// the ones there are. `process` is true for a Linux process's threads,
/// whose `thread_id` is the LWP. A guest's is the stub's thread id.
pub fn select_vcpus<'a>(
    vcpus: &'a [VcpuState],
    process: bool,
    selection: &Selection,
) -> anyhow::Result<Vec<&'a VcpuState>> {
    if selection.lwp.is_some() && !process {
        anyhow::bail!("--lwp selects a thread of a Linux process; select a vCPU with --vcpu or --thread");
    }
    let found = if let Some(id) = selection.vcpu {
        vcpus.iter().find(|vcpu| vcpu.id == id)
    } else if let Some(number) = selection.thread {
        vcpus.iter().find(|vcpu| u64::from(vcpu.id) + 1 == u64::from(number))
    } else if let Some(lwp) = selection.lwp {
        vcpus.iter().find(|vcpu| vcpu.thread_id == Some(lwp))
    } else {
        return Ok(vcpus.iter().collect());
    };
    if let Some(vcpu) = found {
        return Ok(vec![vcpu]);
    }
    let requested = match (selection.vcpu, selection.thread, selection.lwp) {
        (Some(id), _, _) => format!("vCPU {id}"),
        (_, Some(number), _) => format!("thread {number}"),
        (_, _, Some(lwp)) => format!("thread with LWP {lwp}"),
        _ => unreachable!("a selection was checked above"),
    };
    if process {
        let threads: Vec<String> = vcpus
            .iter()
            .map(|vcpu| format!("{} (LWP {})", u64::from(vcpu.id) + 1, vcpu.thread_id.unwrap_or_default()))
            .collect();
        anyhow::bail!("no {requested} in the process; its threads are {}", threads.join(", "))
    }
    let ids: Vec<String> = vcpus.iter().map(|vcpu| vcpu.id.to_string()).collect();
    if selection.thread.is_none() {
        anyhow::bail!("no {requested} in the snapshot; its vCPUs are {}", ids.join(", "))
    }
    let numbers: Vec<String> = vcpus.iter().map(|vcpu| (u64::from(vcpu.id) + 1).to_string()).collect();
    anyhow::bail!("no {requested} in the snapshot; its vCPUs are {}, shown as threads {}", ids.join(", "), numbers.join(", "))
}

/// Runs `stardump regs`; warnings about a damaged snapshot go to `err` in
/// text mode.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let snapshot = open_target(&args.file)?;
    let process = super::is_process(&snapshot);
    let vcpus = select_vcpus(snapshot.vcpus(), process, &args.selection)?;
    let warnings = super::warnings::damage_warnings(&snapshot);
    let mut outcome = Outcome::Complete;
    if vcpus.iter().any(|vcpu| !vcpu.present.general) || !warnings.is_empty() {
        outcome = Outcome::Incomplete;
    }

    if args.json {
        let report = RegsReport {
            schema_version: JSON_SCHEMA_VERSION,
            command: "regs",
            snapshot: args.file.display().to_string(),
            warnings,
            vcpus: vcpus
                .iter()
                .map(|vcpu| {
                    let list = registers(vcpu);
                    VcpuRegisters {
                        vcpu: vcpu.id,
                        registers: list.iter().map(|r| (r.name, hex(r.value))).collect(),
                        flags: list
                            .iter()
                            .filter_map(|r| match r.natural {
                                Natural::Flags(table) => Some((r.name, flag_names(r.value, table))),
                                _ => None,
                            })
                            .collect(),
                    }
                })
                .collect(),
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(outcome);
    }

    super::warnings::write_text(&warnings, err)?;
    for (index, vcpu) in vcpus.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        match vcpu.thread_id.filter(|_| process) {
            Some(lwp) => writeln!(out, "Thread {} (LWP {lwp}):", u64::from(vcpu.id) + 1)?,
            None => writeln!(out, "Thread {} (vCPU {}):", u64::from(vcpu.id) + 1, vcpu.id)?,
        }
        if !vcpu.present.general {
            writeln!(out, "General registers of vCPU {} were not captured", vcpu.id)?;
        }
        for register in registers(vcpu) {
            writeln!(out, "{:<15}{:<19}{}", register.name, hex(register.value), natural_text(&register))?;
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eflags_named_lowest_bit_first() {
        assert_eq!(flag_names(0x246, EFLAGS), vec!["PF", "ZF", "IF"]);
    }

    #[test]
    fn negative_register_shown_signed() {
        let register = Register { name: "rax", value: u64::MAX, natural: Natural::Decimal };
        assert_eq!(natural_text(&register), "-1");
    }

    #[test]
    fn missing_vcpu_lists_ids() {
        let vcpus = [VcpuState { id: 0, ..VcpuState::default() }, VcpuState { id: 1, ..VcpuState::default() }];
        let selection = Selection { vcpu: Some(5), ..Selection::default() };
        let error = select_vcpus(&vcpus, false, &selection).unwrap_err();
        assert_eq!(error.to_string(), "no vCPU 5 in the snapshot; its vCPUs are 0, 1");
    }

    #[test]
    fn threads_selected_by_number_or_lwp() {
        let vcpus = [
            VcpuState { id: 0, thread_id: Some(700), ..VcpuState::default() },
            VcpuState { id: 1, thread_id: Some(702), ..VcpuState::default() },
        ];
        let by_number = Selection { thread: Some(2), ..Selection::default() };
        assert_eq!(select_vcpus(&vcpus, true, &by_number).unwrap()[0].id, 1);
        let by_lwp = Selection { lwp: Some(700), ..Selection::default() };
        assert_eq!(select_vcpus(&vcpus, true, &by_lwp).unwrap()[0].id, 0);
        let missing = Selection { lwp: Some(701), ..Selection::default() };
        assert_eq!(
            select_vcpus(&vcpus, true, &missing).unwrap_err().to_string(),
            "no thread with LWP 701 in the process; its threads are 1 (LWP 700), 2 (LWP 702)"
        );
        assert_eq!(select_vcpus(&vcpus, true, &Selection::default()).unwrap().len(), 2);
    }
}
