//! Capture plans: what the entry program copies for each probe, and how user space reads it
//! back.
//!
//! A [`Plan`] pairs the kernel's half (the `#[repr(C)]` [`CapturePlan`] written into the plans
//! map) with the user's half (which argument each payload slot holds and how to show it). Both
//! halves are built together here, so they cannot disagree about offsets.

use tracer_ebpf::{CapturePlan, CaptureStep, MAX_PAYLOAD, MAX_STEPS, location, reg, value};

use crate::error::{Error, Result};

/// How a captured value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// A raw 64-bit register whose type is unknown: small values in decimal, others in hex.
    RawWord,
}

/// One argument of a probe's payload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArgSlot {
    pub name: String,
    /// Byte offset in the payload.
    pub offset: u16,
    /// Bytes in the payload.
    pub size: u16,
    pub format: ValueFormat,
}

/// A probe's capture plan, both halves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kernel: CapturePlan,
    pub args: Vec<ArgSlot>,
}

/// How many System V argument registers are captured when nothing says how many parameters
/// a function has.
pub const DEFAULT_RAW_ARGS: usize = 6;

/// Builds plans step by step, placing each value in the payload.
#[derive(Debug, Default)]
struct PlanBuilder {
    kernel: CapturePlan,
    args: Vec<ArgSlot>,
}

impl PlanBuilder {
    fn register_word(&mut self, name: String, register: u8) -> Result<()> {
        let index = self.kernel.step_count as usize;
        let offset = self.kernel.payload_len as usize;
        if index >= MAX_STEPS || offset + 8 > MAX_PAYLOAD {
            return Err(Error::Usage(format!(
                "too many values to capture: at most {MAX_STEPS} steps and {MAX_PAYLOAD} bytes per call"
            )));
        }
        self.kernel.steps[index] = CaptureStep {
            location: location::REGISTER,
            reg: register,
            value: value::WORD,
            _pad: 0,
            size: 8,
            out_offset: offset as u16,
        };
        self.kernel.step_count += 1;
        self.kernel.payload_len += 8;
        self.args.push(ArgSlot {
            name,
            offset: offset as u16,
            size: 8,
            format: ValueFormat::RawWord,
        });
        Ok(())
    }

    fn finish(self) -> Plan {
        Plan {
            kernel: self.kernel,
            args: self.args,
        }
    }
}

/// A plan that captures the first `count` System V integer argument registers as `arg0..`.
pub fn raw_register_args(count: usize) -> Result<Plan> {
    if count > reg::SYSV_ARGS.len() {
        return Err(Error::Usage(format!(
            "only the first {} arguments are passed in registers; {count} asked",
            reg::SYSV_ARGS.len()
        )));
    }
    let mut builder = PlanBuilder::default();
    for (index, &register) in reg::SYSV_ARGS.iter().take(count).enumerate() {
        builder.register_word(format!("arg{index}"), register)?;
    }
    Ok(builder.finish())
}

/// Renders a raw register value: decimal when it reads as a small signed number, else hex.
pub fn render_raw_word(word: u64) -> String {
    let signed = word as i64;
    if (-65536..=0xffff_ffff).contains(&signed) {
        signed.to_string()
    } else {
        format!("{word:#x}")
    }
}

/// Reads slot `arg` out of `payload`; `None` if the payload is too short for it.
pub fn read_word(payload: &[u8], arg: &ArgSlot) -> Option<u64> {
    let start = arg.offset as usize;
    let bytes = payload.get(start..start + 8)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_plan_reads_sysv_registers_into_consecutive_slots() {
        let plan = raw_register_args(3).unwrap();
        assert_eq!(plan.kernel.step_count, 3);
        assert_eq!(plan.kernel.payload_len, 24);
        let regs: Vec<u8> = plan.kernel.steps[..3].iter().map(|s| s.reg).collect();
        assert_eq!(regs, [reg::RDI, reg::RSI, reg::RDX]);
        for (i, (step, arg)) in plan.kernel.steps.iter().zip(&plan.args).enumerate() {
            assert_eq!(step.out_offset as usize, i * 8);
            assert_eq!(step.out_offset, arg.offset);
            assert_eq!(step.location, location::REGISTER);
            assert_eq!(step.value, value::WORD);
            assert_eq!(arg.name, format!("arg{i}"));
        }
        // Unused steps stay zero: the kernel stops at step_count, but zeros are safe anyway.
        assert_eq!(plan.kernel.steps[3], CaptureStep::default());
    }

    #[test]
    fn refuses_more_registers_than_the_abi_has() {
        assert!(raw_register_args(6).is_ok());
        assert!(raw_register_args(7).is_err());
    }

    #[test]
    fn renders_words_readably() {
        assert_eq!(render_raw_word(49), "49");
        assert_eq!(render_raw_word(u64::MAX), "-1");
        assert_eq!(render_raw_word(0xffff_ffff), "4294967295");
        assert_eq!(render_raw_word(0x7ffd_1234_5678), "0x7ffd12345678");
    }

    #[test]
    fn reads_words_and_refuses_short_payloads() {
        let plan = raw_register_args(2).unwrap();
        let mut payload = [0u8; 16];
        payload[8..].copy_from_slice(&7u64.to_le_bytes());
        assert_eq!(read_word(&payload, &plan.args[1]), Some(7));
        assert_eq!(read_word(&payload[..12], &plan.args[1]), None);
    }
}
