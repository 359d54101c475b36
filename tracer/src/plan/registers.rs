//! The one register table: each x86-64 general register's index in capture steps
//! (`tracer_ebpf::reg`, what the eBPF programs read out of `pt_regs`), its DWARF number and its
//! name. DWARF locations, calling conventions and `list --params` all translate through here.

use tracer_ebpf::reg;

use crate::symbols::dwarf::location::DWARF_RSP;

/// (capture-step index, DWARF register number, name), for every general register.
const GENERAL: [(u8, u16, &str); 16] = [
    (reg::RAX, 0, "rax"),
    (reg::RDX, 1, "rdx"),
    (reg::RCX, 2, "rcx"),
    (reg::RBX, 3, "rbx"),
    (reg::RSI, 4, "rsi"),
    (reg::RDI, 5, "rdi"),
    (reg::RBP, 6, "rbp"),
    (reg::RSP, DWARF_RSP, "rsp"),
    (reg::R8, 8, "r8"),
    (reg::R9, 9, "r9"),
    (reg::R10, 10, "r10"),
    (reg::R11, 11, "r11"),
    (reg::R12, 12, "r12"),
    (reg::R13, 13, "r13"),
    (reg::R14, 14, "r14"),
    (reg::R15, 15, "r15"),
];

/// The capture-step index of DWARF register `dwarf`, if it is a general register.
pub fn from_dwarf(dwarf: u16) -> Option<u8> {
    GENERAL
        .iter()
        .find(|(_, number, _)| *number == dwarf)
        .map(|(index, _, _)| *index)
}

/// DWARF registers 17–32 are xmm0–15, which `pt_regs` does not hold.
pub fn is_vector_dwarf(dwarf: u16) -> bool {
    (17..=32).contains(&dwarf)
}

/// The name of capture-step register `index` (`rdi`), or `?`.
pub fn name(index: u8) -> &'static str {
    GENERAL
        .iter()
        .find(|(i, _, _)| *i == index)
        .map_or("?", |(_, _, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_register_translates_both_ways() {
        for (index, dwarf, name) in GENERAL {
            assert_eq!(from_dwarf(dwarf), Some(index));
            assert_eq!(super::name(index), name);
        }
        assert_eq!(from_dwarf(5), Some(reg::RDI));
        assert_eq!(from_dwarf(17), None);
        assert!(is_vector_dwarf(17) && !is_vector_dwarf(16));
        assert_eq!(super::name(99), "?");
    }
}
