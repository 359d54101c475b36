//! Reading x86-64 machine code to decide where an entry probe is cheapest.
//!
//! The kernel emulates only a few instructions at a uprobe site (push, nop, jmp, jcc, call,
//! ret); any other first instruction is executed out of line behind a single-step trap, about
//! 30× dearer per hit on our machines (DESIGN.md, "What a probe costs"). Many functions start
//! with an instruction that does nothing to arguments, stack or memory (`endbr64` under
//! `-fcf-protection`, Go's stack-check `cmp`), followed by one the kernel emulates. We put the
//! probe there instead — unless a jump inside the function lands between the entry and that
//! site, which would make the probe fire without a call.
//!
//! Must never move a probe past an instruction that writes a register other than flags, the
//! stack pointer, or memory.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};

/// What one hit of a probe at a site costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CostClass {
    /// The kernel emulates the instruction: no single-step trap.
    Emulated,
    /// The instruction runs out of line behind a single-step trap.
    SingleStep,
    /// The bytes could not be decoded (not code, or truncated).
    Unknown,
}

impl std::fmt::Display for CostClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Emulated => "emulated",
            Self::SingleStep => "single-step",
            Self::Unknown => "unknown",
        })
    }
}

/// Where the entry probe of a function goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPlacement {
    /// Bytes after the function's first instruction.
    pub skip: u64,
    pub cost: CostClass,
    /// The instruction at the probe site, e.g. `push`.
    pub instruction: String,
}

/// Instructions at most skipped: `endbr64`, then a nop or a compare is all we expect.
const MAX_SKIPPED: usize = 3;

fn decode_all(code: &[u8], address: u64) -> Vec<Instruction> {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instructions = Vec::new();
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            break;
        }
        instructions.push(instruction);
    }
    instructions
}

/// Whether the kernel emulates `instruction` at a probe site.
fn cost_of(instruction: &Instruction) -> CostClass {
    if instruction.is_invalid() {
        return CostClass::Unknown;
    }
    let emulated = instruction.is_jmp_short_or_near()
        || instruction.is_jcc_short_or_near()
        || instruction.is_call_near()
        || instruction.mnemonic() == Mnemonic::Ret
        || instruction.mnemonic() == Mnemonic::Nop
        || (instruction.mnemonic() == Mnemonic::Push && instruction.op0_kind() == OpKind::Register);
    if emulated {
        CostClass::Emulated
    } else {
        CostClass::SingleStep
    }
}

/// Whether executing `instruction` leaves arguments, the stack pointer and memory as they
/// were: it only reads, or sets flags.
fn leaves_state_untouched(instruction: &Instruction) -> bool {
    matches!(
        instruction.mnemonic(),
        Mnemonic::Endbr64 | Mnemonic::Nop | Mnemonic::Cmp | Mnemonic::Test
    )
}

/// Decides where the entry probe of the function whose code is `code` at `address` goes.
/// `whole_body` says `code` is all of the function (its symbol has a size): only then can we
/// rule out jumps onto a moved site, so otherwise the probe stays at the entry.
pub fn place_entry_probe(code: &[u8], address: u64, whole_body: bool) -> EntryPlacement {
    let instructions = decode_all(code, address);
    let Some(first) = instructions.first() else {
        return EntryPlacement {
            skip: 0,
            cost: CostClass::Unknown,
            instruction: "?".into(),
        };
    };
    let at_entry = EntryPlacement {
        skip: 0,
        cost: cost_of(first),
        instruction: mnemonic_name(first),
    };
    if at_entry.cost == CostClass::Emulated || !whole_body {
        return at_entry;
    }
    let Some(candidate) = instructions
        .iter()
        .take(MAX_SKIPPED + 1)
        .position(|i| !leaves_state_untouched(i))
    else {
        return at_entry;
    };
    let site = &instructions[candidate];
    if candidate == 0 || cost_of(site) != CostClass::Emulated {
        return at_entry;
    }
    // A jump into (entry, site] would run the probe again without a call.
    let lands_inside = instructions.iter().any(|i| {
        (i.is_jmp_short_or_near() || i.is_jcc_short_or_near() || i.is_call_near())
            && i.near_branch_target() > address
            && i.near_branch_target() <= site.ip()
    });
    if lands_inside {
        return at_entry;
    }
    EntryPlacement {
        skip: site.ip() - address,
        cost: CostClass::Emulated,
        instruction: mnemonic_name(site),
    }
}

fn mnemonic_name(instruction: &Instruction) -> String {
    format!("{:?}", instruction.mnemonic()).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
    const PUSH_RBP: u8 = 0x55;
    const MOV_RBP_RSP: [u8; 3] = [0x48, 0x89, 0xe5];
    const RET: u8 = 0xc3;

    #[test]
    fn moves_past_endbr64_onto_push() {
        let mut code = ENDBR64.to_vec();
        code.push(PUSH_RBP);
        code.extend(MOV_RBP_RSP);
        code.push(RET);
        let placement = place_entry_probe(&code, 0x1000, true);
        assert_eq!(placement.skip, 4);
        assert_eq!(placement.cost, CostClass::Emulated);
        assert_eq!(placement.instruction, "push");
    }

    #[test]
    fn moves_past_gos_stack_check_onto_the_jump() {
        // cmp 0x10(%r14),%rsp ; jbe +N ; push %rbp ; ... ; ret
        let code = [
            0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
            0x76, 0x02, // jbe +2
            0x55, // push rbp
            RET, 0x90, 0x90,
        ];
        let placement = place_entry_probe(&code, 0x2000, true);
        assert_eq!(placement.skip, 4);
        assert_eq!(placement.instruction, "jbe");
        assert_eq!(placement.cost, CostClass::Emulated);
    }

    #[test]
    fn stays_at_entry_when_a_jump_lands_on_the_site() {
        // endbr64 ; push rbp ; ... ; jmp back to the push
        let mut code = ENDBR64.to_vec();
        code.push(PUSH_RBP); // at +4
        code.extend(MOV_RBP_RSP); // +5..+8
        code.extend([0xeb, 0x00]); // jmp rel8, patched to land on +4:
        let jump_end = code.len() as i64;
        code[jump_end as usize - 1] = (4 - jump_end) as i8 as u8;
        code.push(RET);
        let placement = place_entry_probe(&code, 0x3000, true);
        assert_eq!(placement.skip, 0, "{placement:?}");
        assert_eq!(placement.instruction, "endbr64");
        assert_eq!(placement.cost, CostClass::SingleStep);
    }

    #[test]
    fn never_moves_past_an_instruction_with_effects() {
        // mov %rdi,%rax ; push %rbp: the mov writes a register, so the probe stays.
        let code = [0x48, 0x89, 0xf8, PUSH_RBP, RET];
        let placement = place_entry_probe(&code, 0x4000, true);
        assert_eq!(placement.skip, 0);
        assert_eq!(placement.cost, CostClass::SingleStep);
        assert_eq!(placement.instruction, "mov");
        // endbr64 ; sub $8,%rsp: the sub moves the stack pointer.
        let mut code = ENDBR64.to_vec();
        code.extend([0x48, 0x83, 0xec, 0x08, RET]);
        assert_eq!(place_entry_probe(&code, 0x5000, true).skip, 0);
    }

    #[test]
    fn an_emulated_first_instruction_stays_put() {
        let placement = place_entry_probe(&[PUSH_RBP, RET], 0x6000, true);
        assert_eq!((placement.skip, placement.cost), (0, CostClass::Emulated));
        assert_eq!(
            place_entry_probe(&[0xe9, 0, 0, 0, 0], 0, true).cost,
            CostClass::Emulated
        );
    }

    #[test]
    fn stays_at_entry_without_the_whole_body() {
        let mut code = ENDBR64.to_vec();
        code.push(PUSH_RBP);
        let placement = place_entry_probe(&code, 0x1000, false);
        assert_eq!((placement.skip, placement.cost), (0, CostClass::SingleStep));
    }

    #[test]
    fn garbage_and_empty_code_are_unknown_not_a_panic() {
        assert_eq!(place_entry_probe(&[], 0, true).cost, CostClass::Unknown);
        assert_eq!(place_entry_probe(&[0x0f, 0x0b], 0, true).instruction, "ud2");
        let truncated = place_entry_probe(&ENDBR64[..2], 0, true);
        assert_eq!(truncated.skip, 0);
        for seed in 0u8..=255 {
            let bytes: Vec<u8> = (0..32u8)
                .map(|i| i.wrapping_mul(seed).wrapping_add(seed))
                .collect();
            let placement = place_entry_probe(&bytes, 0x7000, true);
            assert!(placement.skip < 32);
        }
    }
}
