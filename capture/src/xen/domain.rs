//! Domains as `--list` shows them, and finding a domain by id or by its
//! xenstore name.

use serde::Serialize;
use tracing::{debug, warn};

use super::bindings::ctrl::XenCtrl;
use super::bindings::store::XenStore;
use super::bindings::{XenDomctlGetDomainInfo, XenPfn};
use super::error::XenError;

/// `XEN_DOMINF_*` bits of `xen_domctl_getdomaininfo.flags`.
pub mod dominf {
    #![allow(missing_docs)] // The names are the header's.
    pub const DYING: u32 = 1 << 0;
    pub const HVM_GUEST: u32 = 1 << 1;
    pub const SHUTDOWN: u32 = 1 << 2;
    pub const PAUSED: u32 = 1 << 3;
    pub const BLOCKED: u32 = 1 << 4;
    pub const RUNNING: u32 = 1 << 5;
    pub const SHUTDOWN_SHIFT: u32 = 16;
    pub const SHUTDOWN_MASK: u32 = 0xff;
}

/// `SHUTDOWN_crash` (public/sched.h): the reason a crashed guest gives.
pub const SHUTDOWN_CRASH: u32 = 3;
/// `XEN_X86_EMU_PIT`: Xen emulates the PIT for HVM guests, never for PVH.
const XEN_X86_EMU_PIT: u32 = 1 << 8;
/// Domains per `xc_domain_getinfolist` call.
const LIST_BATCH: usize = 256;
/// Bytes of a `xen_pfn_t`; the bindings assume x86_64.
const _: () = assert!(std::mem::size_of::<XenPfn>() == 8);

/// The virtualisation mode of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    /// Paravirtualised: page tables hold machine frames.
    Pv,
    /// Hardware virtualised with emulated devices.
    Hvm,
    /// Hardware virtualised without emulated devices.
    Pvh,
}

impl DomainKind {
    /// Returns the kind of the domain described by `info`.
    pub fn of(info: &XenDomctlGetDomainInfo) -> DomainKind {
        if info.flags & dominf::HVM_GUEST == 0 {
            DomainKind::Pv
        } else if info.arch_config.emulation_flags & XEN_X86_EMU_PIT != 0 {
            DomainKind::Hvm
        } else {
            DomainKind::Pvh
        }
    }

    /// Returns the name `--list` prints.
    pub fn name(self) -> &'static str {
        match self {
            DomainKind::Pv => "PV",
            DomainKind::Hvm => "HVM",
            DomainKind::Pvh => "PVH",
        }
    }
}

/// One domain as `stardump-capture --list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DomainEntry {
    /// The domain id.
    pub domid: u32,
    /// The name from xenstore, when it has one.
    pub name: Option<String>,
    /// PV, HVM or PVH.
    pub kind: DomainKind,
    /// vCPUs online.
    pub vcpus: u32,
    /// Memory the domain has, in KiB.
    pub memory_kib: u64,
    /// State flags in `xl list` order: running, blocked, paused, shutdown,
    /// crashed, dying (`r-----`).
    pub state: String,
    /// Whether stardump can capture it (not dom0, not dying).
    pub capturable: bool,
}

impl DomainEntry {
    fn new(info: &XenDomctlGetDomainInfo, name: Option<String>) -> DomainEntry {
        let domid = u32::from(info.domain);
        DomainEntry {
            domid,
            name,
            kind: DomainKind::of(info),
            vcpus: info.nr_online_vcpus,
            memory_kib: info.tot_pages.saturating_mul(4),
            state: state_flags(info.flags),
            capturable: domid != 0 && info.flags & dominf::DYING == 0,
        }
    }
}

/// Returns the reason code of a shut-down domain, or `None` while it runs.
pub fn shutdown_reason(flags: u32) -> Option<u32> {
    (flags & dominf::SHUTDOWN != 0).then_some((flags >> dominf::SHUTDOWN_SHIFT) & dominf::SHUTDOWN_MASK)
}

/// Returns `xl list`'s six state letters for `XEN_DOMINF_*` flags.
pub fn state_flags(flags: u32) -> String {
    let crashed = shutdown_reason(flags) == Some(SHUTDOWN_CRASH);
    let letters = [
        (flags & dominf::RUNNING != 0, 'r'),
        (flags & dominf::BLOCKED != 0, 'b'),
        (flags & dominf::PAUSED != 0, 'p'),
        (flags & dominf::SHUTDOWN != 0 && !crashed, 's'),
        (crashed, 'c'),
        (flags & dominf::DYING != 0, 'd'),
    ];
    letters.iter().map(|&(set, letter)| if set { letter } else { '-' }).collect()
}

/// Returns every domain, dom0 included, in id order.
pub fn all_domain_infos(ctrl: &XenCtrl) -> Result<Vec<XenDomctlGetDomainInfo>, XenError> {
    let mut infos = Vec::new();
    let mut first = 0u32;
    loop {
        let batch = ctrl.domain_info_list(first, LIST_BATCH)?;
        let Some(last) = batch.last() else { break };
        first = u32::from(last.domain) + 1;
        let full = batch.len() == LIST_BATCH;
        infos.extend(batch);
        if !full {
            break;
        }
    }
    Ok(infos)
}

/// Reads `/local/domain/DOMID/name`.
fn domain_name(store: &XenStore, domid: u32) -> Result<Option<String>, XenError> {
    let value = store.read(&format!("/local/domain/{domid}/name"))?;
    Ok(value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Lists every domain with its xenstore name. Without xenstored the names
/// are left out with a warning.
pub fn list_domains(ctrl: &XenCtrl) -> Result<Vec<DomainEntry>, XenError> {
    let store = match XenStore::open() {
        Ok(store) => Some(store),
        Err(error) => {
            warn!(%error, "cannot connect to xenstore; domain names are left out");
            None
        }
    };
    let mut entries = Vec::new();
    for info in all_domain_infos(ctrl)? {
        let domid = u32::from(info.domain);
        let name = match &store {
            Some(store) => domain_name(store, domid).unwrap_or_else(|error| {
                warn!(domid, %error, "cannot read the domain's name");
                None
            }),
            None => None,
        };
        entries.push(DomainEntry::new(&info, name));
    }
    Ok(entries)
}

/// Formats `entries` as the table `--list` prints, one domain a line
/// after a header; dom0 and dying domains are marked as not capturable.
pub fn format_table(entries: &[DomainEntry]) -> String {
    let name_width = entries
        .iter()
        .map(|entry| entry.name.as_deref().map_or(1, str::len))
        .max()
        .unwrap_or(0)
        .max(4);
    let mut text = format!("{:>5}  {:<name_width$}  {:<4}  {:>5}  {:>10}  {:<6}\n", "ID", "NAME", "KIND", "VCPUS", "MEMORY_MIB", "STATE");
    for entry in entries {
        let name = entry.name.as_deref().unwrap_or("-");
        text.push_str(&format!(
            "{:>5}  {:<name_width$}  {:<4}  {:>5}  {:>10}  {:<6}{}\n",
            entry.domid,
            name,
            entry.kind.name(),
            entry.vcpus,
            entry.memory_kib / 1024,
            entry.state,
            if entry.capturable { "" } else { "  (not capturable)" },
        ));
    }
    text
}

/// Finds the domain named by `spec`: a domain id, or a name looked up in
/// xenstore. Returns its id and information.
pub fn find_domain(ctrl: &XenCtrl, spec: &str) -> Result<(u32, XenDomctlGetDomainInfo), XenError> {
    if let Ok(domid) = spec.parse::<u32>() {
        let info = ctrl.domain_info(domid)?.ok_or(XenError::MissingDomain { domid })?;
        return Ok((domid, info));
    }
    let store = XenStore::open()?;
    for info in all_domain_infos(ctrl)? {
        let domid = u32::from(info.domain);
        if domain_name(&store, domid)?.as_deref() == Some(spec) {
            debug!(domid, name = spec, "found the domain by name");
            return Ok((domid, info));
        }
    }
    Err(XenError::MissingName { name: spec.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_letters() {
        assert_eq!(state_flags(dominf::RUNNING), "r-----");
        assert_eq!(state_flags(dominf::BLOCKED | dominf::PAUSED), "-bp---");
        let crashed = dominf::SHUTDOWN | (SHUTDOWN_CRASH << dominf::SHUTDOWN_SHIFT);
        assert_eq!(state_flags(crashed), "----c-");
        assert_eq!(state_flags(dominf::SHUTDOWN | dominf::DYING), "---s-d");
    }

    #[test]
    fn shutdown_reason_needs_shutdown_flag() {
        assert_eq!(shutdown_reason(SHUTDOWN_CRASH << dominf::SHUTDOWN_SHIFT), None);
        assert_eq!(shutdown_reason(dominf::SHUTDOWN | (4 << dominf::SHUTDOWN_SHIFT)), Some(4));
    }

    #[test]
    fn table_lists_each_domain() {
        let entry = |domid, name: Option<&str>, capturable| DomainEntry {
            domid,
            name: name.map(str::to_owned),
            kind: DomainKind::Pv,
            vcpus: 1,
            memory_kib: 16 * 1024,
            state: "-b----".to_owned(),
            capturable,
        };
        let table = format_table(&[entry(0, Some("Domain-0"), false), entry(7, None, true)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("NAME"), "{}", lines[0]);
        assert!(lines[0].contains("STATE"), "{}", lines[0]);
        assert!(lines[1].contains("Domain-0"), "{}", lines[1]);
        assert!(lines[1].ends_with("(not capturable)"), "{}", lines[1]);
        assert!(lines[2].trim_start().starts_with("7  -"), "{}", lines[2]);
        assert!(lines[2].contains("PV"), "{}", lines[2]);
        assert!(lines[2].contains("16"), "{}", lines[2]);
        assert!(lines[2].ends_with("-b----"), "{}", lines[2]);
    }

    #[test]
    fn kind_from_flags() {
        let mut info = XenDomctlGetDomainInfo::default();
        assert_eq!(DomainKind::of(&info), DomainKind::Pv);
        info.flags = dominf::HVM_GUEST;
        assert_eq!(DomainKind::of(&info), DomainKind::Pvh);
        info.arch_config.emulation_flags = 0x7ff;
        assert_eq!(DomainKind::of(&info), DomainKind::Hvm);
    }
}
