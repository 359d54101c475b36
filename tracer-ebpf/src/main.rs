//! The eBPF programs: one generic entry program and one generic return program.
//!
//! Every attach point carries its probe id as BPF cookie. The entry program looks up the
//! probe's capture plan, stamps the time, captures what the plan says and parks the call in a
//! bounded LRU map keyed by thread, frame and probe. The return program completes the call
//! and emits it into the ring buffer. There is no per-function code: the verifier sees the
//! same two programs every time, and all that varies is data in maps.
//!
//! Must never: loop without a constant bound, read the context at a variable offset, or drop
//! anything silently (every failure bumps a counter of `Counter`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, pt_regs},
        helpers::{
            bpf_get_current_pid_tgid,
            generated::{bpf_get_attach_cookie, bpf_get_smp_processor_id, bpf_ktime_get_ns},
        },
        macros::{map, uprobe, uretprobe},
        maps::{Array, LruHashMap, PerCpuArray, RingBuf},
        programs::{ProbeContext, RetProbeContext},
    };
    use aya_log_ebpf::warn;
    use tracer_ebpf::{
        COUNTER_SLOTS, CallRecord, CapturePlan, Config, Counter, EVENT_HEADER_SIZE, EventKind,
        INFLIGHT_ENTRIES, InflightKey, MAX_PAYLOAD, MAX_PROBES, MAX_STEPS, RETURN_SP_ADJUST,
        RING_BYTES, config_flags, location, reg, value,
    };

    #[map]
    static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

    #[map]
    static PLANS: Array<CapturePlan> = Array::with_max_entries(MAX_PROBES, 0);

    #[map]
    static INFLIGHT: LruHashMap<InflightKey, CallRecord> =
        LruHashMap::with_max_entries(INFLIGHT_ENTRIES, 0);

    #[map]
    static SCRATCH: PerCpuArray<CallRecord> = PerCpuArray::with_max_entries(1, 0);

    #[map]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

    #[map]
    static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

    #[inline(always)]
    fn count(counter: Counter) {
        if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
            // SAFETY: a per-CPU slot is only touched by programs on this CPU, which do not
            // preempt each other.
            unsafe { *slot += 1 };
        }
    }

    #[inline(always)]
    fn config() -> Option<&'static Config> {
        let config = CONFIG.get(0)?;
        (config.flags & config_flags::ENABLED != 0).then_some(config)
    }

    #[inline(always)]
    fn probe_id(ctx: *mut core::ffi::c_void) -> u32 {
        // SAFETY: `ctx` is the program's own context; the helper only reads the attach cookie.
        unsafe { bpf_get_attach_cookie(ctx) as u32 }
    }

    /// A general register by plan index. Each arm reads the context at a constant offset.
    #[inline(always)]
    fn register(regs: *const pt_regs, index: u8) -> u64 {
        // SAFETY: `regs` is the program context (a `pt_regs` the kernel hands every uprobe).
        let regs = unsafe { &*regs };
        match index {
            reg::RDI => regs.rdi,
            reg::RSI => regs.rsi,
            reg::RDX => regs.rdx,
            reg::RCX => regs.rcx,
            reg::R8 => regs.r8,
            reg::R9 => regs.r9,
            reg::RAX => regs.rax,
            reg::RBX => regs.rbx,
            reg::R10 => regs.r10,
            reg::R11 => regs.r11,
            reg::R12 => regs.r12,
            reg::R13 => regs.r13,
            reg::R14 => regs.r14,
            reg::R15 => regs.r15,
            reg::RBP => regs.rbp,
            reg::RSP => regs.rsp,
            _ => 0,
        }
    }

    /// Runs the plan's steps against the registers, writing into `record.payload`.
    #[inline(always)]
    fn capture(plan: &CapturePlan, regs: *const pt_regs, record: &mut CallRecord) {
        for index in 0..MAX_STEPS {
            if index as u32 >= plan.step_count {
                break;
            }
            let step = &plan.steps[index];
            if step.location != location::REGISTER || step.value != value::WORD {
                continue;
            }
            let offset = step.out_offset as usize;
            if offset > MAX_PAYLOAD - 8 {
                continue;
            }
            let word = register(regs, step.reg);
            // SAFETY: `offset + 8 <= MAX_PAYLOAD`, checked above; the write is unaligned-safe.
            unsafe {
                record
                    .payload
                    .as_mut_ptr()
                    .add(offset)
                    .cast::<u64>()
                    .write_unaligned(word)
            };
        }
    }

    #[uprobe]
    pub fn koolkit_entry(ctx: ProbeContext) -> u32 {
        if config().is_none() {
            return 0;
        }
        let probe = probe_id(ctx.regs.cast());
        let Some(plan) = PLANS.get(probe) else {
            count(Counter::NoPlan);
            warn!(&ctx, "koolkit-trace: probe {} has no plan", probe);
            return 0;
        };
        let Some(record) = SCRATCH.get_ptr_mut(0) else {
            return 0;
        };
        // SAFETY: the per-CPU scratch record is ours until this program returns.
        let record = unsafe { &mut *record };
        let pid_tgid = bpf_get_current_pid_tgid();
        record.header.kind = EventKind::Call as u32;
        record.header.probe_id = probe;
        record.header.pid = (pid_tgid >> 32) as u32;
        record.header.tid = pid_tgid as u32;
        record.header.payload_len = plan.payload_len.min(MAX_PAYLOAD as u32);
        capture(plan, ctx.regs, record);
        // SAFETY: reading the monotonic clock has no preconditions.
        record.header.entry_ns = unsafe { bpf_ktime_get_ns() };

        // SAFETY: `ctx.regs` is the program context.
        let frame = unsafe { (*ctx.regs).rsp };
        let key = InflightKey {
            pid_tgid,
            frame,
            probe_id: probe,
            _pad: 0,
        };
        if INFLIGHT.insert(&key, &*record, 0).is_err() {
            count(Counter::InflightFull);
        }
        0
    }

    #[uretprobe]
    pub fn koolkit_return(ctx: RetProbeContext) -> u32 {
        // SAFETY: reading the monotonic clock has no preconditions; read first so the
        // bookkeeping below is not part of the latency.
        let exit_ns = unsafe { bpf_ktime_get_ns() };
        let Some(config) = config() else {
            return 0;
        };
        let probe = probe_id(ctx.regs.cast());
        // SAFETY: `ctx.regs` is the program context.
        let (sp, ret) = unsafe { ((*ctx.regs).rsp, (*ctx.regs).rax) };
        let key = InflightKey {
            pid_tgid: bpf_get_current_pid_tgid(),
            frame: sp.wrapping_sub(RETURN_SP_ADJUST),
            probe_id: probe,
            _pad: 0,
        };
        let Some(record) = INFLIGHT.get_ptr_mut(&key) else {
            count(Counter::LostEntry);
            return 0;
        };
        // SAFETY: the in-flight value stays valid until we remove it below; only this thread's
        // return can complete this key.
        let record = unsafe { &mut *record };
        record.header.exit_ns = exit_ns;
        record.header.ret = ret;
        // SAFETY: no preconditions.
        record.header.cpu = unsafe { bpf_get_smp_processor_id() };

        let payload_len = record.header.payload_len as usize;
        if payload_len <= MAX_PAYLOAD {
            let len = EVENT_HEADER_SIZE + payload_len;
            // SAFETY: `len <= size_of::<CallRecord>()`, so the slice stays inside the record.
            let bytes = unsafe {
                core::slice::from_raw_parts((record as *const CallRecord).cast::<u8>(), len)
            };
            let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
            let wake = if pending >= config.wakeup_bytes as u64 {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
            if EVENTS.output::<[u8]>(bytes, wake as u64).is_err() {
                count(Counter::RingFull);
            }
        }
        let _ = INFLIGHT.remove(&key);
        0
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        // SAFETY: the verifier rejects any program with a reachable panic, so this cannot run.
        unsafe { core::hint::unreachable_unchecked() }
    }
}

/// On the host this binary is empty: the programs exist only for `target_arch = "bpf"`, which
/// `tracer/build.rs` builds with aya-build. The host build keeps `cargo test --workspace` and
/// `cargo clippy --workspace` working without bpf-linker.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
