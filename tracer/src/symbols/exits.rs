//! Every way out of a function, for return probes that never touch a return address: its
//! `ret`s, the jumps that leave its body (tail calls; a conditional one with its condition,
//! which the return program checks in the flags), and whether it calls anything at all.
//!
//! At each of those instructions the stack pointer is back at the slot of the return address,
//! where it was at the entry, so the return program keys the call as the entry did. A jump
//! that leaves the body with a frame still set up (to a `.cold` part the caller did not pass
//! in) keys nothing: it finds no call at that depth.
//!
//! Must never: list an instruction inside the body as a way out unless it leaves the body.

use iced_x86::{ConditionCode, Instruction, Mnemonic, OpKind};

use super::placement::{decode_all, kernel_refuses};

/// One way out of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Its address.
    pub address: u64,
    /// The condition under which it leaves (a conditional tail call), as
    /// [`tracer_ebpf::exit_condition`] encodes it; 0 for always.
    pub condition: u8,
    /// A jump to another function, not a `ret`: the call's result is that function's.
    pub tail_call: bool,
}

/// The ways out of a function and what its body does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exits {
    pub exits: Vec<Exit>,
    /// The body calls something (directly or not): an exception can unwind through it.
    pub calls: bool,
    /// The body leaves by a jump (a tail call): what it jumps to returns to our caller.
    pub tail_calls: bool,
}

/// A part of a function's code: the body, or a `.cold` part the compiler split off.
#[derive(Debug, Clone, Copy)]
pub struct Part<'c> {
    pub code: &'c [u8],
    pub address: u64,
}

impl Part<'_> {
    fn contains(&self, address: u64) -> bool {
        self.address <= address && address < self.address + self.code.len() as u64
    }
}

/// The ways out of the function made of `parts` (its body first); None when a part does
/// not decode whole (data in the code, or a size that is wrong), since a way out could then
/// be missed.
pub fn find_exits(parts: &[Part<'_>]) -> Option<Exits> {
    let mut found = Exits::default();
    let inside = |address: u64| parts.iter().any(|part| part.contains(address));
    for part in parts {
        let (instructions, whole) = decode_all(part.code, part.address);
        if !whole {
            return None;
        }
        let mut previous: Option<&Instruction> = None;
        for instruction in &instructions {
            if instruction.is_call_near() || instruction.is_call_near_indirect() {
                found.calls = true;
            }
            let exit = match instruction.mnemonic() {
                Mnemonic::Ret => Some(0),
                _ if instruction.is_jmp_short_or_near() => {
                    (!inside(instruction.near_branch_target())).then_some(0)
                }
                _ if instruction.is_jcc_short_or_near() => {
                    (!inside(instruction.near_branch_target()))
                        .then(|| condition_code(instruction.condition_code()))
                }
                // A jump through a register or memory: a tail call when the frame was just
                // torn down (or there was none); a switch's jump table otherwise.
                _ if instruction.is_jmp_near_indirect() => {
                    previous.is_none_or(tears_down_frame).then_some(0)
                }
                _ => None,
            };
            // A way out the kernel cannot probe (`notrack jmp`) is left out: the call then
            // ends unwound, never mispaired.
            let offset = (instruction.ip() - part.address) as usize;
            let refused = kernel_refuses(&part.code[offset..]).is_some();
            if let Some(condition) = exit.filter(|_| !refused) {
                let tail_call = instruction.mnemonic() != Mnemonic::Ret;
                found.tail_calls |= tail_call;
                found.exits.push(Exit {
                    address: instruction.ip(),
                    condition,
                    tail_call,
                });
            }
            previous = Some(instruction);
        }
    }
    Some(found)
}

/// Whether `instruction` ends an epilogue: the stack pointer is back at the return address
/// after it (`pop`, `leave`, `add $N,%rsp`).
fn tears_down_frame(instruction: &Instruction) -> bool {
    use iced_x86::Register;
    match instruction.mnemonic() {
        Mnemonic::Pop | Mnemonic::Leave => true,
        Mnemonic::Add | Mnemonic::Lea => {
            instruction.op0_kind() == OpKind::Register
                && instruction.op0_register() == Register::RSP
        }
        _ => false,
    }
}

/// The condition of a `jcc`, as [`tracer_ebpf::exit_condition`] numbers it: the x86
/// condition-code nibble plus one.
fn condition_code(code: ConditionCode) -> u8 {
    let nibble = match code {
        ConditionCode::o => 0,
        ConditionCode::no => 1,
        ConditionCode::b => 2,
        ConditionCode::ae => 3,
        ConditionCode::e => 4,
        ConditionCode::ne => 5,
        ConditionCode::be => 6,
        ConditionCode::a => 7,
        ConditionCode::s => 8,
        ConditionCode::ns => 9,
        ConditionCode::p => 10,
        ConditionCode::np => 11,
        ConditionCode::l => 12,
        ConditionCode::ge => 13,
        ConditionCode::le => 14,
        ConditionCode::g => 15,
        // Not a jcc: never taken as a way out.
        ConditionCode::None => return 0,
    };
    nibble + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const RET: u8 = 0xc3;

    fn exits(parts: &[Part<'_>]) -> (Vec<(u64, u8)>, bool, bool) {
        let found = find_exits(parts).expect("decodes");
        let exits = found
            .exits
            .iter()
            .map(|e| (e.address, e.condition))
            .collect();
        (exits, found.calls, found.tail_calls)
    }

    #[test]
    fn rets_and_jumps_out_of_the_body_are_ways_out() {
        // push %rbp; call +0; pop %rbp; ret
        let body = [0x55, 0xe8, 0, 0, 0, 0, 0x5d, RET];
        assert_eq!(
            exits(&[Part {
                code: &body,
                address: 0x1000
            }]),
            (vec![(0x1007, 0)], true, false)
        );
        // A leaf: test %edi,%edi; je +1 (inside); ret; xor %eax,%eax; ret
        let leaf = [0x85, 0xff, 0x74, 0x01, RET, 0x31, 0xc0, RET];
        assert_eq!(
            exits(&[Part {
                code: &leaf,
                address: 0x2000
            }]),
            (vec![(0x2004, 0), (0x2007, 0)], false, false)
        );
        // Tail calls: test; jne other (conditional); jmp other.
        let mut tail = vec![0x85, 0xff, 0x0f, 0x85];
        tail.extend(0x100i32.to_le_bytes()); // jne +0x100
        tail.push(0xe9);
        tail.extend(0x200i32.to_le_bytes()); // jmp +0x200
        assert_eq!(
            exits(&[Part {
                code: &tail,
                address: 0x3000
            }]),
            (vec![(0x3002, 5 + 1), (0x3008, 0)], false, true)
        );
    }

    #[test]
    fn indirect_jumps_leave_only_after_an_epilogue() {
        // A switch: jmp *%rax with the frame still set up (after a mov).
        let switch = [0x48, 0x89, 0xf8, 0xff, 0xe0, RET]; // mov %rdi,%rax; jmp *%rax; ret
        assert_eq!(
            exits(&[Part {
                code: &switch,
                address: 0x1000
            }])
            .0,
            vec![(0x1005, 0)]
        );
        // A tail call through a pointer: pop %rbx; jmp *%rax.
        let tail = [0x5b, 0xff, 0xe0];
        assert_eq!(
            exits(&[Part {
                code: &tail,
                address: 0x2000
            }])
            .0,
            vec![(0x2001, 0)]
        );
    }

    #[test]
    fn a_cold_part_is_inside_and_its_rets_are_ways_out() {
        // Body: je cold (+0x100); ret. Cold: call; jmp back into the body.
        let body = [0x0f, 0x84, 0xfa, 0x00, 0x00, 0x00, RET]; // je 0x1100
        let cold = [0xe8, 0, 0, 0, 0, 0xe9, 0xf6, 0xfe, 0xff, 0xff, RET]; // call; jmp 0x1000; ret
        let parts = [
            Part {
                code: &body,
                address: 0x1000,
            },
            Part {
                code: &cold,
                address: 0x1100,
            },
        ];
        assert_eq!(exits(&parts), (vec![(0x1006, 0), (0x110a, 0)], true, false));
        // Not decodable: no answer rather than a partial one.
        assert!(
            find_exits(&[Part {
                code: &[0x0f, 0x0b, 0xff],
                address: 0
            }])
            .is_none()
        );
    }
}
