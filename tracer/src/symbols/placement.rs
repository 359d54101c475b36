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
//! Must never move a probe past an instruction that writes memory, the stack pointer (except
//! where returns are probed on the ways out), or a register other than flags and the
//! caller-saved scratch registers no argument is passed in (RAX, R10, R11): a `mov %rdi,%rax`
//! leaves every argument where the plan reads it.

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
    /// The kernel refuses a uprobe on this instruction (a `lock` prefix, `in`/`out`, ...):
    /// the function cannot be traced.
    Refused,
}

impl std::fmt::Display for CostClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Emulated => "emulated",
            Self::SingleStep => "single-step",
            Self::Unknown => "unknown",
            Self::Refused => "not probeable",
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
    /// Bytes the skipped instructions took off the stack pointer (`sub $8,%rsp`): the return
    /// address is that far above the stack pointer at the probe. Only where returns are not
    /// a uretprobe, which takes the return address from the top of the stack.
    pub sp_adjust: u64,
}

/// Instructions at most skipped: `endbr64`, a nop or a compare, a copy into a scratch
/// register.
const MAX_SKIPPED: usize = 4;

/// What the running kernel emulates beyond the instructions every supported kernel does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Emulation {
    /// Nops (`90`, `0f 1f /0`) are emulated since Linux 6.16.
    pub nops: bool,
}

impl Emulation {
    /// What this machine's kernel emulates.
    pub fn of_running_kernel() -> Self {
        let version = aya::util::KernelVersion::current().ok();
        Self {
            nops: version.is_some_and(|v| v >= aya::util::KernelVersion::new(6, 16, 0)),
        }
    }
}

/// Decodes `code` at `address`; `None` unless all of it decodes (a body with data or
/// unknown encodings in it cannot be checked for jumps).
pub(crate) fn decode_all(code: &[u8], address: u64) -> (Vec<Instruction>, bool) {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instructions = Vec::new();
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            return (instructions, false);
        }
        instructions.push(instruction);
    }
    (instructions, true)
}

/// One-byte opcodes the kernel's uprobe decoder refuses on x86-64 (`good_insns_64` in
/// `arch/x86/kernel/uprobes.c`): former 32-bit-only opcodes, `int3`/`int`/`into`/`iret`,
/// `in`/`out`/`ins`/`outs`, `hlt`, `cli`/`sti`, `int1`. Bit `n` of word `n / 64` is opcode `n`.
const REFUSED_OPCODES: [u64; 4] = {
    let refused: [u8; 32] = [
        0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x6c, 0x6d,
        0x6e, 0x6f, 0x82, 0x9a, 0xcc, 0xcd, 0xce, 0xcf, 0xd4, 0xd5, 0xd6, 0xe4, 0xe5, 0xe6, 0xe7,
        0xea, 0xf1,
    ];
    let more: [u8; 7] = [0xec, 0xed, 0xee, 0xef, 0xf4, 0xfa, 0xfb];
    let mut words = [0u64; 4];
    let mut i = 0;
    while i < refused.len() {
        words[(refused[i] / 64) as usize] |= 1 << (refused[i] % 64);
        i += 1;
    }
    let mut i = 0;
    while i < more.len() {
        words[(more[i] / 64) as usize] |= 1 << (more[i] % 64);
        i += 1;
    }
    words
};

/// Why a VEX or EVEX instruction the kernel takes is not probed (see [`kernel_refuses`]).
const VECTOR_STEPPED_WRONGLY: &str = "a vector instruction, which the kernel single-steps wrongly";

/// Why the kernel refuses a uprobe on the instruction starting `bytes`, if it does
/// (`uprobe_init_insn`): a `lock` or ES/CS/SS/DS segment prefix, an instruction that masks
/// exceptions (`mov` to SS), or an opcode it never single-steps. Two-byte (`0f`) and VEX
/// opcodes pass its first check, as here. The VEX and EVEX instructions it takes it steps
/// wrongly: with a probe on `vpbroadcastb %esi,%ymm17`, the first instruction of glibc's
/// `__strchr_evex`, every `strchr` of the process returned a wrong result, and a probe on a
/// VEX `vpbroadcastb %xmm0,%ymm1` lost half the bytes it wrote (seen on 6.18, with a bare
/// tracefs uprobe too, while probes on ordinary instructions next to them kept every vector
/// register). So every vector site is refused here but `vzeroupper`/`vzeroall`, which take no
/// operand.
pub(crate) fn kernel_refuses(bytes: &[u8]) -> Option<&'static str> {
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            0xf0 => return Some("lock prefix"),
            0x26 | 0x2e | 0x36 | 0x3e => return Some("segment prefix"),
            0x64 | 0x65 | 0x66 | 0x67 | 0xf2 | 0xf3 => at += 1,
            _ => break,
        }
    }
    // A REX prefix (40-4f) comes last, just before the opcode.
    if bytes.get(at).is_some_and(|b| b & 0xf0 == 0x40) {
        at += 1;
    }
    let mut opcode = *bytes.get(at)?;
    // VEX (c5 + 1 byte, c4 + 2) and EVEX (62 + 3) start vector instructions in 64-bit mode.
    // The kernel checks the opcode byte after them against the same one-byte table, without
    // the opcode map the prefix implies, so `vpxor` (ef) and `vmovd` (6e) are refused like
    // `out` and `outs` (seen on 6.18), while `vpbroadcastb` (78) is not.
    let vector = match opcode {
        0xc5 => Some(2),
        0xc4 => Some(3),
        0x62 => Some(4),
        _ => None,
    };
    if let Some(length) = vector {
        let prefix = bytes.get(at..at + length)?;
        opcode = *bytes.get(at + length)?;
        if REFUSED_OPCODES[(opcode / 64) as usize] & (1 << (opcode % 64)) != 0 {
            return Some("a vector opcode uprobes cannot step");
        }
        // vzeroupper, vzeroall: VEX, opcode map 0f (implied by c5; c4's low five bits), 77.
        let map_0f = prefix[0] == 0xc5 || (prefix[0] == 0xc4 && prefix[1] & 0x1f == 1);
        if opcode == 0x77 && map_0f {
            return None;
        }
        return Some(VECTOR_STEPPED_WRONGLY);
    }
    if opcode == 0x8e && bytes.get(at + 1).is_some_and(|modrm| (modrm >> 3) & 7 == 2) {
        return Some("mov to ss");
    }
    (REFUSED_OPCODES[(opcode / 64) as usize] & (1 << (opcode % 64)) != 0)
        .then_some("an opcode uprobes cannot step")
}

/// Whether the kernel emulates `instruction` (whose first byte is `first_byte`) at a probe
/// site, after `arch/x86/kernel/uprobes.c`: relative jumps, conditional jumps and calls
/// (`branch_setup_xol_ops`), `push` of a 64-bit register (`push_setup_xol_ops`), nops on
/// newer kernels. `ret` is single-stepped. An operand-size prefix (`66`) rules emulation out.
fn cost_of(instruction: &Instruction, first_byte: u8, emulation: Emulation) -> CostClass {
    if instruction.is_invalid() {
        return CostClass::Unknown;
    }
    if first_byte == 0x66 {
        return CostClass::SingleStep;
    }
    let emulated = instruction.is_jmp_short_or_near()
        || instruction.is_jcc_short_or_near()
        || instruction.is_call_near()
        || (instruction.mnemonic() == Mnemonic::Nop && emulation.nops)
        || (instruction.mnemonic() == Mnemonic::Push
            && instruction.op0_kind() == OpKind::Register
            && instruction.op0_register().is_gpr64());
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

/// Whether `instruction` only computes into RAX, R10 or R11 (`mov %rdi,%rax`, `xor %eax,%eax`,
/// `lea 8(%rdi),%r10`, a load into one): registers of the System V ABI that carry no argument
/// and that the callee may clobber, so every argument is still where the plan reads it.
fn writes_only_scratch(instruction: &Instruction) -> bool {
    use iced_x86::Register;
    let copies = matches!(
        instruction.mnemonic(),
        Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd | Mnemonic::Lea
    ) || (instruction.mnemonic() == Mnemonic::Xor
        && instruction.op1_kind() == OpKind::Register
        && instruction.op0_register() == instruction.op1_register());
    copies
        && instruction.op0_kind() == OpKind::Register
        && matches!(
            instruction.op0_register().full_register(),
            Register::RAX | Register::R10 | Register::R11
        )
}

/// The target of a direct branch (jmp, jcc, call, loop, jrcxz, xbegin), if `instruction` is one.
fn branch_target(instruction: &Instruction) -> Option<u64> {
    (0..instruction.op_count())
        .any(|i| {
            matches!(
                instruction.op_kind(i),
                OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16
            )
        })
        .then(|| instruction.near_branch_target())
}

/// Decides where the entry probe of the function whose code is `code` at `address` goes.
/// `whole_body` says `code` is all of the function (its symbol has a size): only then can we
/// rule out jumps onto a moved site, so otherwise the probe stays at the entry.
pub fn place_entry_probe(
    code: &[u8],
    address: u64,
    whole_body: bool,
    emulation: Emulation,
) -> EntryPlacement {
    place_entry(code, address, whole_body, emulation, false)
}

/// [`place_entry_probe`] for a function whose returns are probed on its ways out: the probe
/// may also move past instructions that only grow the stack (`sub $N,%rsp`), whose bytes it
/// reports in `sp_adjust`.
pub fn place_entry_probe_moving_sp(
    code: &[u8],
    address: u64,
    whole_body: bool,
    emulation: Emulation,
) -> EntryPlacement {
    place_entry(code, address, whole_body, emulation, true)
}

/// How many bytes `instruction` takes off the stack pointer, if that is all it does
/// (`sub $N,%rsp`, `lea -N(%rsp),%rsp`).
fn stack_growth(instruction: &Instruction) -> Option<u64> {
    use iced_x86::Register;
    if instruction.op0_kind() != OpKind::Register || instruction.op0_register() != Register::RSP {
        return None;
    }
    let grows = match instruction.mnemonic() {
        Mnemonic::Sub if instruction.op_count() == 2 => match instruction.op1_kind() {
            OpKind::Immediate8to64 | OpKind::Immediate32to64 => instruction.immediate(1) as i64,
            _ => return None,
        },
        Mnemonic::Lea
            if instruction.memory_base() == Register::RSP
                && instruction.memory_index() == Register::None =>
        {
            -(instruction.memory_displacement64() as i64)
        }
        _ => return None,
    };
    u64::try_from(grows)
        .ok()
        .filter(|&bytes| bytes > 0 && bytes < 1 << 20)
}

fn place_entry(
    code: &[u8],
    address: u64,
    whole_body: bool,
    emulation: Emulation,
    sp_may_move: bool,
) -> EntryPlacement {
    let skippable = |instruction: &Instruction| {
        if leaves_state_untouched(instruction) || writes_only_scratch(instruction) {
            Some(0)
        } else if sp_may_move {
            stack_growth(instruction)
        } else {
            None
        }
    };
    let (instructions, decoded_all) = decode_all(code, address);
    let byte_at = |i: &Instruction| code.get((i.ip() - address) as usize).copied().unwrap_or(0);
    let Some(first) = instructions.first() else {
        return EntryPlacement {
            skip: 0,
            cost: CostClass::Unknown,
            instruction: "?".into(),
            sp_adjust: 0,
        };
    };
    if let Some(why) = kernel_refuses(code) {
        let name = if first.has_lock_prefix() {
            format!("lock {}", mnemonic_name(first))
        } else {
            mnemonic_name(first)
        };
        return EntryPlacement {
            skip: 0,
            cost: CostClass::Refused,
            // The kernel would take this one: say why it is not probed all the same.
            instruction: if why == VECTOR_STEPPED_WRONGLY {
                format!("{name}: the kernel single-steps vector instructions wrongly")
            } else {
                name
            },
            sp_adjust: 0,
        };
    }
    let at_entry = EntryPlacement {
        skip: 0,
        cost: cost_of(first, byte_at(first), emulation),
        instruction: mnemonic_name(first),
        sp_adjust: 0,
    };
    let Some(mut sp_adjust) = skippable(first) else {
        return at_entry;
    };
    if at_entry.cost == CostClass::Emulated || !whole_body || !decoded_all {
        return at_entry;
    }
    // The first emulated instruction, if only side-effect-free ones (or, where allowed,
    // stack growth) come before it.
    let mut site = None;
    for instruction in instructions.iter().take(MAX_SKIPPED + 1).skip(1) {
        if cost_of(instruction, byte_at(instruction), emulation) == CostClass::Emulated {
            site = Some(instruction);
            break;
        }
        match skippable(instruction) {
            Some(bytes) => sp_adjust += bytes,
            None => break,
        }
    }
    let Some(site) = site else {
        return at_entry;
    };
    // A jump into (entry, site] would run the probe again without a call.
    let lands_inside = instructions
        .iter()
        .filter_map(branch_target)
        .any(|target| target > address && target <= site.ip());
    if lands_inside {
        return at_entry;
    }
    EntryPlacement {
        skip: site.ip() - address,
        cost: CostClass::Emulated,
        instruction: mnemonic_name(site),
        sp_adjust,
    }
}

/// Whether `code` (at `address`) holds a direct call or jump to `target`.
pub fn branches_to(code: &[u8], address: u64, target: u64) -> bool {
    let (instructions, _) = decode_all(code, address);
    instructions
        .iter()
        .filter_map(branch_target)
        .any(|to| to == target)
}

/// Where the probes of a Go function go: the entry after its stack check, the returns on
/// every `ret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoPlacement {
    pub entry: EntryPlacement,
    /// Offsets of the `ret` instructions from the function's first byte.
    pub returns: Vec<u64>,
}

/// Whether `instruction` compares a register with the goroutine's stack guard,
/// `cmp 0x10(%r14), REG`: the first half of a Go prologue's stack check.
fn is_stack_guard_compare(instruction: &Instruction) -> bool {
    use iced_x86::Register;
    instruction.mnemonic() == Mnemonic::Cmp
        && instruction.op_count() == 2
        && instruction.op1_kind() == OpKind::Memory
        && instruction.memory_base() == Register::R14
        && instruction.memory_displacement64() == 0x10
}

/// Places the probes of the Go function whose whole body is `code` at `address`.
///
/// Go functions open with a stack check (`cmp 0x10(%r14),%rsp; jbe morestack`, or for large
/// frames `lea -N(%rsp),%r12; cmp 0x10(%r14),%r12; jbe`): when the stack must grow,
/// `morestack` copies it and jumps back to the entry, so an entry probe at +0 (or at the
/// `jbe`) would fire twice for one call. The probe goes after the `jbe`; the instructions
/// skipped read the guard and set flags (and `r12`, a scratch register outside the ABI).
/// Returns are probed on every `ret`, where the stack pointer is back at its entry value.
pub fn place_go_probes(
    code: &[u8],
    address: u64,
    emulation: Emulation,
) -> Result<GoPlacement, &'static str> {
    let (instructions, decoded_all) = decode_all(code, address);
    if !decoded_all || instructions.is_empty() {
        return Err("its body does not decode, so its returns cannot be found");
    }
    let returns: Vec<u64> = instructions
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Ret)
        .map(|i| i.ip() - address)
        .collect();
    if returns.is_empty() {
        return Err("it has no ret instruction (it never returns, or only jumps away)");
    }
    let byte_at = |i: &Instruction| code.get((i.ip() - address) as usize).copied().unwrap_or(0);
    let check_len = match instructions.as_slice() {
        [cmp, jbe, ..] if is_stack_guard_compare(cmp) && jbe.mnemonic() == Mnemonic::Jbe => 2,
        [lea, cmp, jbe, ..]
            if lea.mnemonic() == Mnemonic::Lea
                && is_stack_guard_compare(cmp)
                && jbe.mnemonic() == Mnemonic::Jbe =>
        {
            3
        }
        _ => 0,
    };
    let site = instructions.get(check_len).unwrap_or(&instructions[0]);
    let lands_inside = instructions
        .iter()
        .filter_map(branch_target)
        .any(|target| target > address && target <= site.ip());
    let site = if lands_inside { &instructions[0] } else { site };
    let skip = site.ip() - address;
    let cost = if kernel_refuses(&code[skip as usize..]).is_some() {
        CostClass::Refused
    } else {
        cost_of(site, byte_at(site), emulation)
    };
    Ok(GoPlacement {
        entry: EntryPlacement {
            skip,
            cost,
            instruction: mnemonic_name(site),
            sp_adjust: 0,
        },
        returns,
    })
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
    fn go_entries_go_after_the_stack_check_and_returns_on_every_ret() {
        // main.depth (Go 1.19): lea -0x198(%rsp),%r12; cmp 0x10(%r14),%r12; jbe +N;
        // sub $0x218,%rsp; ...; ret; ...; ret
        let mut code = vec![
            0x4c, 0x8d, 0xa4, 0x24, 0x68, 0xfe, 0xff, 0xff, // lea -0x198(%rsp),%r12
            0x4d, 0x3b, 0x66, 0x10, // cmp 0x10(%r14),%r12
            0x76, 0x0b, // jbe +11 (to the call below)
            0x48, 0x81, 0xec, 0x18, 0x02, 0x00, 0x00, // sub $0x218,%rsp
            0xc3, // ret
            0x90, 0xc3, // nop; ret
        ];
        code.extend([0xe8, 0, 0, 0, 0, 0xeb, 0xe0]); // call morestack; jmp back to +0
        let placement = place_go_probes(&code, 0x4000, Emulation::default()).unwrap();
        assert_eq!(placement.entry.skip, 14);
        assert_eq!(placement.entry.instruction, "sub");
        assert_eq!(placement.returns, vec![21, 23]);
        // The small-frame check: cmp 0x10(%r14),%rsp; jbe; push %rbp ...
        let small = [
            0x49, 0x3b, 0x66, 0x10, 0x76, 0x03, PUSH_RBP, 0x5d, RET, 0x90,
        ];
        let placement = place_go_probes(&small, 0x5000, Emulation::default()).unwrap();
        assert_eq!(
            (placement.entry.skip, placement.entry.cost),
            (6, CostClass::Emulated)
        );
        assert_eq!(placement.returns, vec![8]);
        // A leaf without a check: the entry stays at +0.
        let leaf = [0x48, 0x89, 0xd8, RET]; // mov %rbx,%rax; ret
        let placement = place_go_probes(&leaf, 0x6000, Emulation::default()).unwrap();
        assert_eq!((placement.entry.skip, placement.returns), (0, vec![3]));
        assert!(place_go_probes(&[0xeb, 0xfe], 0x7000, Emulation::default()).is_err());
    }

    #[test]
    fn with_probes_on_the_ways_out_the_entry_moves_past_stack_growth() {
        // sub $0x8,%rsp; call +0; add $0x8,%rsp; ret
        let code = [
            0x48, 0x83, 0xec, 0x08, 0xe8, 0, 0, 0, 0, 0x48, 0x83, 0xc4, 0x08, RET,
        ];
        let moved = place_entry_probe_moving_sp(&code, 0x1000, true, Emulation::default());
        assert_eq!(
            (moved.skip, moved.cost, moved.sp_adjust),
            (4, CostClass::Emulated, 8)
        );
        assert_eq!(moved.instruction, "call");
        // A uretprobe needs the return address on top: the probe stays at the entry.
        let kept = place_entry_probe(&code, 0x1000, true, Emulation::default());
        assert_eq!((kept.skip, kept.sp_adjust), (0, 0));
        // Past an instruction that writes an argument register it never moves.
        let writes = [0x48, 0x83, 0xec, 0x08, 0x89, 0xfb, 0xe8, 0, 0, 0, 0, RET]; // mov %edi,%ebx
        let stays = place_entry_probe_moving_sp(&writes, 0x1000, true, Emulation::default());
        assert_eq!((stays.skip, stays.sp_adjust), (0, 0));
        // lea -0x18(%rsp),%rsp grows it too.
        let lea = [0x48, 0x8d, 0x64, 0x24, 0xe8, 0xe8, 0, 0, 0, 0, RET];
        let moved = place_entry_probe_moving_sp(&lea, 0x1000, true, Emulation::default());
        assert_eq!((moved.skip, moved.sp_adjust), (5, 0x18));
    }

    #[test]
    fn instructions_the_kernel_refuses_are_not_probeable() {
        // pthread_spin_lock: lock decl (%rdi)
        let lock_dec = [0xf0, 0xff, 0x0f, 0x75, 0x0b, RET];
        let placement = place_entry_probe(&lock_dec, 0x1000, true, Emulation::default());
        assert_eq!(placement.cost, CostClass::Refused);
        assert_eq!(placement.instruction, "lock dec");
        for (bytes, why) in [
            (&[0xf0, 0x48, 0x0f, 0xb1, 0x17][..], "lock prefix"), // lock cmpxchg
            (&[0x3e, 0xff, 0xe0][..], "segment prefix"),          // notrack jmp *%rax
            (&[0xf4][..], "an opcode uprobes cannot step"),       // hlt
            (&[0xcd, 0x80][..], "an opcode uprobes cannot step"), // int 0x80
            (&[0x8e, 0xd0][..], "mov to ss"),                     // mov %eax,%ss
            (
                &[0xc5, 0xf9, 0xef, 0xc0][..],
                "a vector opcode uprobes cannot step",
            ), // vpxor
            (
                &[0xc5, 0xf9, 0x6e, 0xc6][..],
                "a vector opcode uprobes cannot step",
            ), // vmovd
            // vpbroadcastb %esi,%ymm17 (EVEX, __strchr_evex), vpbroadcastb %xmm0,%ymm1 (VEX)
            (
                &[0x62, 0xe2, 0x7d, 0x28, 0x7a, 0xce][..],
                VECTOR_STEPPED_WRONGLY,
            ),
            (&[0xc4, 0xe2, 0x7d, 0x78, 0xc8][..], VECTOR_STEPPED_WRONGLY),
        ] {
            assert_eq!(kernel_refuses(bytes), Some(why), "{bytes:x?}");
        }
        for ok in [
            &ENDBR64[..],
            &[PUSH_RBP],
            &MOV_RBP_RSP[..],
            &[0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0], // mov %fs:0x28,%rax
            &[0x0f, 0x05],                                  // syscall: two-byte, passes
            &[0xc5, 0xf8, 0x77],                            // vzeroupper (77 passes)
            &[0xc4, 0xe1, 0x7c, 0x77],                      // vzeroall, three-byte VEX
            &[0x8e, 0xd8],                                  // mov %eax,%ds
        ] {
            assert_eq!(kernel_refuses(ok), None, "{ok:x?}");
        }
    }

    #[test]
    fn moves_past_endbr64_onto_push() {
        let mut code = ENDBR64.to_vec();
        code.push(PUSH_RBP);
        code.extend(MOV_RBP_RSP);
        code.push(RET);
        let placement = place_entry_probe(&code, 0x1000, true, Emulation { nops: true });
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
        let placement = place_entry_probe(&code, 0x2000, true, Emulation { nops: true });
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
        let placement = place_entry_probe(&code, 0x3000, true, Emulation { nops: true });
        assert_eq!(placement.skip, 0, "{placement:?}");
        assert_eq!(placement.instruction, "endbr64");
        assert_eq!(placement.cost, CostClass::SingleStep);
    }

    #[test]
    fn never_moves_past_an_instruction_with_effects() {
        // mov %rdi,%rsi ; push %rbp: the mov writes an argument register, so the probe stays.
        let code = [0x48, 0x89, 0xfe, PUSH_RBP, RET];
        let placement = place_entry_probe(&code, 0x4000, true, Emulation { nops: true });
        assert_eq!(placement.skip, 0);
        assert_eq!(placement.cost, CostClass::SingleStep);
        assert_eq!(placement.instruction, "mov");
        // endbr64 ; sub $8,%rsp: the sub moves the stack pointer.
        let mut code = ENDBR64.to_vec();
        code.extend([0x48, 0x83, 0xec, 0x08, RET]);
        assert_eq!(
            place_entry_probe(&code, 0x5000, true, Emulation { nops: true }).skip,
            0
        );
    }

    #[test]
    fn an_emulated_first_instruction_stays_put() {
        let placement = place_entry_probe(&[PUSH_RBP, RET], 0x6000, true, Emulation { nops: true });
        assert_eq!((placement.skip, placement.cost), (0, CostClass::Emulated));
        assert_eq!(
            place_entry_probe(&[0xe9, 0, 0, 0, 0], 0, true, Emulation { nops: true }).cost,
            CostClass::Emulated
        );
    }

    #[test]
    fn stays_at_entry_without_the_whole_body() {
        let mut code = ENDBR64.to_vec();
        code.push(PUSH_RBP);
        let placement = place_entry_probe(&code, 0x1000, false, Emulation { nops: true });
        assert_eq!((placement.skip, placement.cost), (0, CostClass::SingleStep));
    }

    #[test]
    fn ret_and_old_kernels_nops_are_single_stepped() {
        let old = Emulation { nops: false };
        assert_eq!(
            place_entry_probe(&[RET], 0, true, old).cost,
            CostClass::SingleStep
        );
        assert_eq!(
            place_entry_probe(&[0x90, RET], 0, true, old).cost,
            CostClass::SingleStep
        );
        let new = Emulation { nops: true };
        assert_eq!(
            place_entry_probe(&[0x90, RET], 0, true, new).cost,
            CostClass::Emulated
        );
        // endbr64; nop; mov: the nop is the site where the kernel emulates it.
        let mut code = ENDBR64.to_vec();
        code.extend([0x90, 0x48, 0x89, 0xf8, RET]);
        assert_eq!(place_entry_probe(&code, 0, true, new).skip, 4);
        assert_eq!(place_entry_probe(&code, 0, true, old).skip, 0);
        // 66-prefixed push (push %bp, 16-bit) is not emulated.
        assert_eq!(
            place_entry_probe(&[0x66, 0x55, RET], 0, true, new).cost,
            CostClass::SingleStep
        );
    }

    #[test]
    fn undecodable_bodies_and_loop_targets_keep_the_probe_at_entry() {
        let new = Emulation { nops: true };
        // endbr64; push; then an invalid opcode: the rest of the body cannot be checked.
        let mut code = ENDBR64.to_vec();
        code.extend([PUSH_RBP, 0x0f, 0x0b, 0x06]);
        assert_eq!(place_entry_probe(&code, 0, true, new).skip, 0);
        // endbr64; push; loop back onto the push.
        let mut code = ENDBR64.to_vec();
        code.extend([PUSH_RBP, 0xe2, 0x00]);
        let end = code.len() as i64;
        code[end as usize - 1] = (4 - end) as i8 as u8;
        code.push(RET);
        assert_eq!(place_entry_probe(&code, 0, true, new).skip, 0);
    }

    #[test]
    fn garbage_and_empty_code_are_unknown_not_a_panic() {
        assert_eq!(
            place_entry_probe(&[], 0, true, Emulation { nops: true }).cost,
            CostClass::Unknown
        );
        assert_eq!(
            place_entry_probe(&[0x0f, 0x0b], 0, true, Emulation { nops: true }).instruction,
            "ud2"
        );
        let truncated = place_entry_probe(&ENDBR64[..2], 0, true, Emulation { nops: true });
        assert_eq!(truncated.skip, 0);
        for seed in 0u8..=255 {
            let bytes: Vec<u8> = (0..32u8)
                .map(|i| i.wrapping_mul(seed).wrapping_add(seed))
                .collect();
            let placement = place_entry_probe(&bytes, 0x7000, true, Emulation { nops: true });
            assert!(placement.skip < 32);
        }
    }
}

#[cfg(test)]
mod scratch_tests {
    use super::*;

    #[test]
    fn the_entry_moves_past_copies_into_scratch_registers_only() {
        const PUSH_RBP: u8 = 0x55;
        const RET: u8 = 0xc3;
        // mov %rdi,%rax; push %rbp; pop %rbp; ret
        let copy = [0x48, 0x89, 0xf8, PUSH_RBP, 0x5d, RET];
        let moved = place_entry_probe(&copy, 0x1000, true, Emulation::default());
        assert_eq!((moved.skip, moved.cost), (3, CostClass::Emulated));
        assert_eq!(moved.instruction, "push");
        // xor %eax,%eax; mov (%rdi),%r11 (a load into a scratch register); push %rbp.
        let zero_and_load = [0x31, 0xc0, 0x4c, 0x8b, 0x1f, PUSH_RBP, 0x5d, RET];
        let moved = place_entry_probe(&zero_and_load, 0x1000, true, Emulation::default());
        assert_eq!((moved.skip, moved.cost), (5, CostClass::Emulated));
        // mov %rdi,%rsi clobbers the second argument: the probe stays.
        let clobber = [0x48, 0x89, 0xfe, PUSH_RBP, 0x5d, RET];
        let stays = place_entry_probe(&clobber, 0x1000, true, Emulation::default());
        assert_eq!((stays.skip, stays.cost), (0, CostClass::SingleStep));
        // mov %rax,(%rdi) writes memory: the probe stays.
        let store = [0x48, 0x89, 0x07, PUSH_RBP, 0x5d, RET];
        let stays = place_entry_probe(&store, 0x1000, true, Emulation::default());
        assert_eq!(stays.skip, 0);
        // xor %eax,%ecx is no zeroing and writes rcx (the fourth argument).
        let mixed = [0x31, 0xc1, PUSH_RBP, 0x5d, RET];
        assert_eq!(
            place_entry_probe(&mixed, 0x1000, true, Emulation::default()).skip,
            0
        );
    }
}
