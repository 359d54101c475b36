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
// The BPF target has no atomic read-modify-write in `core::sync::atomic`; the intrinsic
// lowers to the BPF atomic add instruction.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::{
            BPF_F_USER_STACK, BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP,
            BPF_RB_NO_WAKEUP, bpf_pidns_info, pt_regs,
        },
        helpers::{
            bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
            bpf_probe_read_user,
            generated::{
                bpf_copy_from_user, bpf_get_attach_cookie, bpf_get_current_task,
                bpf_get_ns_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
                bpf_probe_read_user as raw_read_user, bpf_probe_read_user_str as raw_read_user_str,
            },
        },
        macros::{map, tracepoint, uprobe, uretprobe},
        maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
        programs::{ProbeContext, RetProbeContext, TracePointContext, tracing::StackIdContext},
    };
    use aya_log_ebpf::warn;
    use core::ffi::c_void;
    use core::intrinsics::{AtomicOrdering, atomic_xadd};
    use tracer_ebpf::{
        ADDRESS_OF_ENTRY, ADDRESS_OF_WAY_OUT, AddressKey, COUNTER_SLOTS, CapturePlan, CaptureStep,
        Condition, Config, Counter, ENDED_BY_TAIL_CALL, EVENT_HEADER_SIZE, EventKind,
        GO_G_STACK_HI, GO_RESULT_WORDS, GOROUTINE_SHADOW, HISTOGRAM_ENTRIES, HistogramKey,
        INFLIGHT_ENTRIES, InFlightCall, InflightKey, LatencyStats, MAX_CHUNK, MAX_CONDITION_TEXT,
        MAX_CONDITIONS, MAX_DEREFS, MAX_PAYLOAD, MAX_PROBE_ADDRESSES, MAX_PROBES, MAX_STEPS,
        MAX_TGIDS, MAX_THREADS, MAX_UNIDENTIFIED, MAX_WATCHED_EXITS, PAGE_SIZE, PAYLOAD_BUFFER,
        Predicate, RETURN_SP_ADJUST, RING_BYTES, RateBucket, STACK_ENTRIES, STATUS_BYTES,
        THREAD_DEPTH, ThreadCalls, UNREADABLE_ARGUMENT, compare, config_flags, exit_condition,
        go_type, histogram_bucket, inflight_marks, location, operand, plan_flags, reg, step_status,
        value,
    };

    #[map]
    static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

    #[map]
    static PLANS: Array<CapturePlan> = Array::with_max_entries(MAX_PROBES, 0);

    #[map]
    static INFLIGHT: LruHashMap<InflightKey, InFlightCall> =
        LruHashMap::with_max_entries(INFLIGHT_ENTRIES, 0);

    /// What every in-flight call starts as (read-only data).
    static ZERO_CALL: InFlightCall = InFlightCall::ZERO;

    #[map]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

    #[map]
    static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

    #[map]
    static TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TGIDS, 0);

    #[map]
    static THREADS: LruHashMap<u64, ThreadCalls> = LruHashMap::with_max_entries(MAX_THREADS, 0);

    #[map]
    static EXITS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_WATCHED_EXITS, 0);

    #[map]
    static FILTERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_PROBES, 0);

    #[map]
    static SAMPLED: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_PROBES, 0);

    #[map]
    static HISTOGRAMS: PerCpuHashMap<HistogramKey, u64> =
        PerCpuHashMap::with_max_entries(HISTOGRAM_ENTRIES, 0);

    #[map]
    static STATS_BY_ARGUMENT: PerCpuHashMap<HistogramKey, LatencyStats> =
        PerCpuHashMap::with_max_entries(HISTOGRAM_ENTRIES, 0);

    #[map]
    static STATS: PerCpuArray<LatencyStats> = PerCpuArray::with_max_entries(MAX_PROBES, 0);

    /// Preallocated (kernels before 5.13 refuse tracing programs a map allocated on insert),
    /// and sized by user space to the predicates there are: most traces have none, or a few.
    #[map]
    static PREDICATES: HashMap<u32, Predicate> = HashMap::with_max_entries(MAX_PROBES, 0);

    #[map]
    static RATE_BUCKETS: Array<RateBucket> = Array::with_max_entries(MAX_PROBES, 0);

    #[map]
    static STACKS: StackTrace = StackTrace::with_max_entries(STACK_ENTRIES, 0);

    #[map]
    static PROBE_ADDRESSES: LruHashMap<AddressKey, u64> =
        LruHashMap::with_max_entries(MAX_PROBE_ADDRESSES, 0);

    #[map]
    static UNIDENTIFIED: HashMap<u32, u8> = HashMap::with_max_entries(MAX_UNIDENTIFIED, 0);

    /// What every thread's parked calls start as (read-only data).
    static NO_CALLS: ThreadCalls = ThreadCalls::EMPTY;

    /// Adds `delta` (wrapping: `u64::MAX` takes one away) to a counter.
    #[inline(always)]
    fn add(counter: Counter, delta: u64) {
        if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
            // SAFETY: the slot is a valid, aligned u64 of this CPU's counters. Uprobe programs
            // can be preempted by another on the same CPU, so the add is atomic.
            unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, delta) };
        }
    }

    /// `bpf_get_current_pid_tgid()` in the ids the tracer knows: the host's, or with
    /// [`config_flags::PID_NAMESPACE`] its pid namespace's (None for a task of another).
    #[inline(always)]
    fn current_pid_tgid(config: Option<&Config>) -> Option<u64> {
        let Some(config) = config.filter(|c| c.flags & config_flags::PID_NAMESPACE != 0) else {
            return Some(bpf_get_current_pid_tgid());
        };
        let mut ids = bpf_pidns_info { pid: 0, tgid: 0 };
        // SAFETY: `ids` is a valid, writable `bpf_pidns_info` of the size passed.
        let failed = unsafe {
            bpf_get_ns_current_pid_tgid(
                config.pid_ns_dev,
                config.pid_ns_ino,
                &mut ids,
                size_of::<bpf_pidns_info>() as u32,
            )
        } != 0;
        (!failed).then(|| (u64::from(ids.tgid) << 32) | u64::from(ids.pid))
    }

    /// Whether calls of process `tgid` are traced.
    #[inline(always)]
    fn traced(config: &Config, tgid: u32) -> bool {
        if tgid == config.self_tgid {
            return false;
        }
        // SAFETY: the value is only tested for presence.
        config.flags & config_flags::SELECT_TGIDS == 0 || unsafe { TGIDS.get(&tgid) }.is_some()
    }

    /// Whether the current thread passes `--tid` and `--comm`.
    #[inline(always)]
    fn selected_thread(config: &Config, pid_tgid: u64) -> bool {
        if config.flags & config_flags::ONE_THREAD != 0 && pid_tgid as u32 != config.tid {
            return false;
        }
        if config.flags & config_flags::ONE_COMMAND != 0 {
            let Ok(comm) = bpf_get_current_comm() else {
                return false;
            };
            let mut i = 0;
            while i < 16 {
                if comm[i] != config.comm[i] {
                    return false;
                }
                i += 1;
            }
        }
        true
    }

    /// Whose calls a [`ThreadCalls`] shadow holds: a thread's, whose frames are entry stack
    /// pointers, or a goroutine's (a Go program's calls move between threads), whose frames
    /// are `u64::MAX` minus the in-flight key's distance below the top of the goroutine's
    /// stack, so that deeper calls have smaller frames in both.
    #[derive(Clone, Copy)]
    enum Owner {
        Thread { pid_tgid: u64 },
        Goroutine { g: u64, tgid: u32 },
    }

    impl Owner {
        #[inline(always)]
        fn of(key: &InflightKey, go: bool) -> Self {
            if go {
                Self::Goroutine {
                    g: key.pid_tgid,
                    tgid: key._pad,
                }
            } else {
                Self::Thread {
                    pid_tgid: key.pid_tgid,
                }
            }
        }

        #[inline(always)]
        fn shadow_key(self) -> u64 {
            match self {
                Self::Thread { pid_tgid } => pid_tgid,
                Self::Goroutine { g, .. } => g | GOROUTINE_SHADOW,
            }
        }

        /// The shadow frame of in-flight key `key`.
        #[inline(always)]
        fn frame_of(self, key: &InflightKey) -> u64 {
            match self {
                Self::Thread { .. } => key.frame,
                Self::Goroutine { .. } => u64::MAX - key.frame,
            }
        }

        /// The in-flight key of the call of `probe` at shadow frame `frame`.
        #[inline(always)]
        fn inflight_key(self, frame: u64, probe: u32) -> InflightKey {
            match self {
                Self::Thread { pid_tgid } => InflightKey {
                    pid_tgid,
                    frame,
                    probe_id: probe,
                    _pad: 0,
                },
                Self::Goroutine { g, tgid } => InflightKey {
                    pid_tgid: g,
                    frame: u64::MAX - frame,
                    probe_id: probe,
                    _pad: tgid,
                },
            }
        }
    }

    /// Counts the parked call of `probe` at `frame` abandoned and marks its in-flight entry
    /// so. The entry stays: if the thread had only switched stacks and the call returns
    /// after all, its return finds the mark and takes the count back.
    #[inline(always)]
    fn abandon(owner: Owner, frame: u64, probe: u32) {
        // A call parked in the shadow alone has nothing else to mark.
        if shadow_only() {
            add(Counter::Abandoned, 1);
            return;
        }
        let key = owner.inflight_key(frame, probe);
        if let Some(call) = INFLIGHT.get_ptr_mut(&key) {
            // SAFETY: the value belongs to a key of this thread; only its probes use it.
            unsafe { (*call).header.exit_ns = inflight_marks::ABANDONED };
            add(Counter::Abandoned, 1);
        }
    }

    /// Pops the parked calls of `thread` that a new call at `frame` proves ended without
    /// returning: every deeper one, and one at the same frame of the same probe (its frame
    /// was reused; the new call's entry replaces its in-flight entry).
    #[inline(always)]
    fn settle_entry(thread: &mut ThreadCalls, owner: Owner, frame: u64, probe: u32) {
        for _ in 0..THREAD_DEPTH {
            let depth = thread.depth as usize;
            if depth == 0 || depth > THREAD_DEPTH {
                return;
            }
            // Masked, not only compared: the verifier must see the index bounded.
            let top = (depth - 1) & (THREAD_DEPTH - 1);
            let (top_frame, top_probe) = (thread.frames[top], thread.probes[top]);
            let deeper = top_frame < frame;
            let reused = top_frame == frame && top_probe == probe;
            if !deeper && !reused {
                return;
            }
            thread.depth -= 1;
            if reused {
                add(Counter::Abandoned, 1);
            } else {
                abandon(owner, top_frame, top_probe);
            }
        }
    }

    /// Whether calls are parked in their thread's shadow alone (see
    /// [`config_flags::SKIP_CAPTURE`]).
    #[inline(always)]
    fn shadow_only() -> bool {
        config().is_some_and(|c| c.flags & config_flags::SKIP_CAPTURE != 0)
    }

    /// Pops the parked calls of `thread` deeper than a return to `frame` (abandoned), then the
    /// returning call itself; returns its entry time in the shadow (0 unless parked there
    /// alone) if it was parked (entered while tracing).
    #[inline(always)]
    fn settle_return(
        thread: &mut ThreadCalls,
        owner: Owner,
        frame: u64,
        probe: u32,
    ) -> Option<u64> {
        for _ in 0..THREAD_DEPTH {
            let depth = thread.depth as usize;
            if depth == 0 || depth > THREAD_DEPTH {
                return None;
            }
            let top = (depth - 1) & (THREAD_DEPTH - 1);
            let (top_frame, top_probe) = (thread.frames[top], thread.probes[top]);
            if top_frame >= frame {
                break;
            }
            thread.depth -= 1;
            abandon(owner, top_frame, top_probe);
        }
        let depth = thread.depth as usize;
        if depth == 0 || depth > THREAD_DEPTH {
            return None;
        }
        let top = (depth - 1) & (THREAD_DEPTH - 1);
        if thread.frames[top] == frame && thread.probes[top] == probe {
            thread.depth -= 1;
            return Some(thread.entries[top]);
        }
        // A function and the one it tail-called share a frame; their returns may come in
        // either order.
        let below = (depth.wrapping_sub(2)) & (THREAD_DEPTH - 1);
        if depth >= 2 && thread.frames[below] == frame && thread.probes[below] == probe {
            let entry_ns = thread.entries[below];
            thread.frames[below] = thread.frames[top];
            thread.probes[below] = thread.probes[top];
            thread.entries[below] = thread.entries[top];
            thread.depth -= 1;
            return Some(entry_ns);
        }
        None
    }

    #[inline(always)]
    fn count(counter: Counter) {
        add(counter, 1);
    }

    #[inline(always)]
    fn config() -> Option<&'static Config> {
        CONFIG.get(0)
    }

    /// The cookie of the probe that fired: the attach cookie, or, on kernels without them
    /// (`BY_ADDRESS`), what user space wrote for this process and address. The programs of
    /// either kind never call the other's helpers: older verifiers refuse unknown ones.
    #[inline(always)]
    fn probe_cookie<const BY_ADDRESS: bool>(
        regs: *mut pt_regs,
        pid_tgid: u64,
        way_out: bool,
    ) -> Option<u64> {
        if !BY_ADDRESS {
            // SAFETY: `regs` is the program's own context; the helper only reads the cookie.
            return Some(unsafe { bpf_get_attach_cookie(regs.cast()) });
        }
        let key = AddressKey {
            tgid: (pid_tgid >> 32) as u32,
            kind: if way_out {
                ADDRESS_OF_WAY_OUT
            } else {
                ADDRESS_OF_ENTRY
            },
            // SAFETY: `regs` is the program context; a uprobe sees its own address in rip.
            address: unsafe { (*regs).rip },
        };
        // SAFETY: the value is copied out at once.
        if let Some(cookie) = unsafe { PROBE_ADDRESSES.get(&key) } {
            return Some(*cookie);
        }
        // A way out of a call whose entry was not told apart either: counted there.
        if !way_out {
            count(Counter::Unidentified);
        }
        // User space reads the process's maps and fills its addresses.
        let _ = UNIDENTIFIED.insert(&key.tgid, &1, BPF_NOEXIST as u64);
        None
    }

    /// The probe of the call returning to `frame` on this thread, from its thread's shadow
    /// (for a return, which fires at the caller's address: no address tells its probe).
    #[inline(always)]
    fn shadow_probe(pid_tgid: u64, frame: u64) -> Option<u32> {
        // SAFETY: the value belongs to this thread's key, only read here.
        let thread = unsafe { THREADS.get(&pid_tgid) }?;
        let depth = thread.depth as usize;
        if depth > THREAD_DEPTH {
            return None;
        }
        for i in 0..THREAD_DEPTH {
            if i >= depth {
                return None;
            }
            // Masked, not only compared: the verifier must see the index bounded.
            let slot = (depth - 1 - i) & (THREAD_DEPTH - 1);
            let parked = thread.frames[slot];
            if parked == frame {
                return Some(thread.probes[slot]);
            }
            // A shallower call: the returning one was not parked.
            if parked > frame {
                return None;
            }
        }
        None
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

    /// Brings the page holding `address` into the process, as the process itself touching it
    /// would: a non-faulting read of a page it has not touched yet fails. Only sleepable
    /// programs may fault.
    #[inline(always)]
    fn fault_in(address: u64) {
        let mut byte = 0u8;
        // SAFETY: the destination is this one-byte local; the helper checks the source and
        // may sleep to fault the page in (the program is sleepable).
        let _ = unsafe {
            bpf_copy_from_user((&mut byte as *mut u8).cast(), 1, address as *const c_void)
        };
    }

    /// Reads a `u64` of user memory.
    #[inline(always)]
    fn read_user_u64(address: u64) -> Option<u64> {
        // SAFETY: the helper checks the address and reports a fault instead of faulting.
        unsafe { bpf_probe_read_user(address as *const u64) }.ok()
    }

    /// `size` (1 or more) capped at `MAX_CHUNK`, bounded where the helper call sees it.
    ///
    /// Verifiers before 6.3 lose a bound checked on one copy of a register when the compiler
    /// reloads another from the stack: the size reaches the helper unbounded and the program
    /// is refused. A mask the compiler cannot fold (the size goes through a volatile slot)
    /// bounds it at the call itself; for 1..=MAX_CHUNK it changes nothing.
    #[inline(always)]
    fn chunk(size: usize) -> u32 {
        let size = if size > MAX_CHUNK { MAX_CHUNK } else { size };
        let mut slot = size;
        // SAFETY: a read of this local, which is initialised.
        let size = unsafe { core::ptr::read_volatile(&mut slot) };
        (((size.wrapping_sub(1)) & (MAX_CHUNK - 1)) + 1) as u32
    }

    /// Copies at most `MAX_CHUNK` bytes of user memory at `source` to `destination`.
    #[inline(always)]
    fn copy_user(destination: *mut u8, size: usize, source: u64) -> bool {
        if size == 0 {
            return true;
        }
        // SAFETY: callers pass a destination inside the in-flight call with `MAX_CHUNK` bytes
        // after it (`PAYLOAD_BUFFER` has the slack); the helper checks the source.
        unsafe { raw_read_user(destination.cast(), chunk(size), source as *const c_void) == 0 }
    }

    /// Bytes from `address` to the end of its page, at most `size`.
    #[inline(always)]
    fn to_page_end(address: u64, size: usize) -> usize {
        let left = (PAGE_SIZE - (address & (PAGE_SIZE - 1))) as usize;
        if left < size { left } else { size }
    }

    /// Writes the name of the Go type descriptor at `descriptor` into `slot`: its `u64` length,
    /// then at most `size` bytes. `go_types` is where the process has `runtime.types`, which
    /// the descriptor's name offset counts from. A name is a flags byte, a varint length and
    /// the bytes (Go 1.17 on).
    #[inline(always)]
    fn go_type_name(slot: *mut u8, size: usize, descriptor: u64, go_types: u64) -> u8 {
        if descriptor == 0 {
            // A nil interface: say so instead of reporting a fault.
            // SAFETY: `slot` has 8 + MAX_CHUNK bytes (see `capture_step`).
            unsafe { slot.cast::<u64>().write_unaligned(u64::MAX) };
            return step_status::OK;
        }
        if go_types == 0 {
            return step_status::FAULT;
        }
        let (Some(flags), Some(name_offset)) = (
            read_user_u64(descriptor.wrapping_add(go_type::TFLAG)),
            read_user_u64(descriptor.wrapping_add(go_type::STR)),
        ) else {
            return step_status::FAULT;
        };
        let extra_star = flags as u8 & go_type::TFLAG_EXTRA_STAR != 0;
        let name = go_types.wrapping_add(name_offset as u32 as i32 as i64 as u64);
        let mut head = [0u8; 3];
        // SAFETY: the destination is this stack array of 3 bytes; the helper checks the
        // source. Three bytes, not a word: a name may end its mapping.
        if unsafe { raw_read_user(head.as_mut_ptr().cast(), 3, name as *const c_void) } != 0 {
            return step_status::FAULT;
        }
        let (mut length, mut start) = if head[1] < 0x80 {
            (head[1] as u64, name.wrapping_add(2))
        } else if head[2] < 0x80 {
            (
                (head[1] & 0x7f) as u64 | (head[2] as u64) << 7,
                name.wrapping_add(3),
            )
        } else {
            // No type name is 16 KiB long: this is not a name.
            return step_status::FAULT;
        };
        if extra_star && length > 0 {
            length -= 1;
            start = start.wrapping_add(1);
        }
        if write_counted(slot, length, size, start) {
            step_status::OK
        } else {
            step_status::FAULT
        }
    }

    /// Writes `length` into the first 8 bytes of `slot`, then copies at most `size` of the
    /// `length` bytes at `source` after it; whether the copy read them all.
    #[inline(always)]
    fn write_counted(slot: *mut u8, length: u64, size: usize, source: u64) -> bool {
        // SAFETY: callers pass a slot with 8 + MAX_CHUNK bytes (see `capture_step`).
        unsafe { slot.cast::<u64>().write_unaligned(length) };
        let take = if length < size as u64 {
            length as usize
        } else {
            size
        };
        // SAFETY: as above; the bytes go after the 8-byte length.
        copy_user(unsafe { slot.add(8) }, take, source)
    }

    /// One capture step: follow the step's pointers from its register, then copy what it asks
    /// into its payload slot. Returns the step's [`step_status`]. `go_types` is where a Go
    /// program has `runtime.types` (0: not Go).
    #[inline(always)]
    fn capture_step<const SLEEPABLE: bool>(
        step: &CaptureStep,
        regs: *const pt_regs,
        payload: &mut [u8; PAYLOAD_BUFFER],
        go_types: u64,
    ) -> u8 {
        if step.location != location::REGISTER {
            return step_status::FAULT;
        }
        let mut value = register(regs, step.reg);
        for index in 0..MAX_DEREFS {
            if index >= step.derefs as usize {
                break;
            }
            let address = value.wrapping_add(step.deref_offsets[index] as i64 as u64);
            if SLEEPABLE {
                fault_in(address);
            }
            match read_user_u64(address) {
                Some(next) => value = next,
                None => return step_status::FAULT,
            }
        }
        let out = (step.out_offset as usize) & (MAX_PAYLOAD - 1);
        let size = step.size as usize;
        let source = value.wrapping_add(step.offset as i64 as u64);
        // The thread's own stack and a Go goroutine's `g` (R14) are in pages it is using:
        // only what pointers lead to may be untouched.
        let resident = step.derefs == 0 && (step.reg == reg::RSP || step.reg == reg::R14);
        if SLEEPABLE && !resident && step.value != value::WORD && step.value != value::STACK_ID {
            fault_in(source);
        }
        // SAFETY: `out < MAX_PAYLOAD` and every write below stays within `out + 8 + MAX_CHUNK`,
        // which `PAYLOAD_BUFFER` holds.
        let slot = unsafe { payload.as_mut_ptr().add(out) };
        let status = |ok: bool| {
            if ok {
                step_status::OK
            } else {
                step_status::FAULT
            }
        };
        match step.value {
            value::WORD => {
                // SAFETY: see `slot`; unaligned writes are fine.
                unsafe { slot.cast::<u64>().write_unaligned(value) };
                step_status::OK
            }
            value::BYTES => status(copy_user(slot, size, source)),
            value::C_STRING => {
                if source == 0 {
                    // A NULL pointer: say so instead of reporting a fault.
                    // SAFETY: see `slot`.
                    unsafe { slot.cast::<u32>().write_unaligned(u32::MAX) };
                    return step_status::OK;
                }
                let size = if size > MAX_CHUNK { MAX_CHUNK } else { size };
                // SAFETY: as `copy_user`, four bytes further in.
                let copied = unsafe {
                    raw_read_user_str(slot.add(4).cast(), chunk(size), source as *const c_void)
                };
                if copied < 0 {
                    // No NUL before an unreadable page: keep what the first page holds.
                    let first = to_page_end(source, size);
                    // SAFETY: see `slot`, four bytes further in.
                    if first == size || !copy_user(unsafe { slot.add(4) }, first, source) {
                        return step_status::FAULT;
                    }
                    // SAFETY: see `slot`.
                    unsafe { slot.cast::<u32>().write_unaligned(first as u32) };
                    return step_status::PARTIAL;
                }
                // The helper counts the NUL it writes.
                let length = if copied > 0 { copied as u32 - 1 } else { 0 };
                // SAFETY: see `slot`.
                unsafe { slot.cast::<u32>().write_unaligned(length) };
                step_status::OK
            }
            value::PTR_LEN_IN_MEMORY | value::PTR_LEN_IN_REGISTERS | value::BEGIN_END_IN_MEMORY => {
                let len_field = match step.len_field {
                    0 => 8,
                    at => at as i64 as u64,
                };
                let (pointer, count) = if step.value == value::PTR_LEN_IN_REGISTERS {
                    (source, register(regs, step.len_reg))
                } else {
                    match (
                        read_user_u64(source),
                        read_user_u64(source.wrapping_add(len_field)),
                    ) {
                        (Some(pointer), Some(end)) if step.value == value::BEGIN_END_IN_MEMORY => {
                            if end < pointer {
                                return step_status::FAULT;
                            }
                            (pointer, end - pointer)
                        }
                        (Some(pointer), Some(length)) => (pointer, length),
                        _ => return step_status::FAULT,
                    }
                };
                let length = match step.element_size {
                    0 | 1 => count,
                    _ if step.value == value::BEGIN_END_IN_MEMORY => count,
                    // No 128-bit multiply in BPF: a count this large is garbage anyway.
                    _ if count > u64::MAX >> 8 => u64::MAX,
                    n => count * n as u64,
                };
                if SLEEPABLE {
                    fault_in(pointer);
                }
                if write_counted(slot, length, size, pointer) {
                    return step_status::OK;
                }
                let take = if length < size as u64 {
                    length as usize
                } else {
                    size
                };
                // The bytes run into an unreadable page: keep those before it.
                let first = to_page_end(pointer, take);
                // SAFETY: see `slot`; the bytes go after the 8-byte length.
                if first == take || !copy_user(unsafe { slot.add(8) }, first, pointer) {
                    return step_status::FAULT;
                }
                // SAFETY: see `slot`.
                unsafe { slot.cast::<u64>().write_unaligned(first as u64) };
                step_status::PARTIAL
            }
            value::GO_TYPE_NAME => go_type_name(slot, size, source, go_types),
            // A sleepable program cannot use a stack-trace map (user space does not ask it
            // for stacks).
            value::STACK_ID if SLEEPABLE => step_status::FAULT,
            value::STACK_ID => {
                // `regs` is the program's context: the helper walks the user stack from it.
                let ctx = ProbeContext::new(regs as *mut c_void);
                match ctx.get_stackid(&STACKS, u64::from(BPF_F_USER_STACK)) {
                    Ok(id) => {
                        // SAFETY: see `slot`.
                        unsafe { slot.cast::<u64>().write_unaligned(id as u64) };
                        step_status::OK
                    }
                    Err(_) => step_status::FAULT,
                }
            }
            _ => step_status::FAULT,
        }
    }

    /// Runs the plan's steps of one side (`at_return`: the steps a Go return runs; else the
    /// entry's), writing each step's slot and status into `call.payload`.
    #[inline(always)]
    fn capture<const SLEEPABLE: bool>(
        plan: &CapturePlan,
        regs: *const pt_regs,
        call: &mut InFlightCall,
        at_return: bool,
    ) {
        for index in 0..MAX_STEPS {
            if index as u32 >= plan.step_count {
                break;
            }
            if plan.at_return(index) != at_return {
                // Until its return runs it, a return step's slot holds nothing.
                if !at_return {
                    call.payload[index] = step_status::AT_RETURN;
                }
                continue;
            }
            let status = capture_step::<SLEEPABLE>(
                &plan.steps[index],
                regs,
                &mut call.payload,
                call.go_types,
            );
            if status != step_status::OK || at_return {
                call.payload[index] = status;
            }
        }
    }

    /// Runs the return steps of the parked call under (this thread, `frame`, `probe`), if its
    /// plan has any (a value returned in RAX and RDX, or in memory RAX points to), before
    /// the return's bookkeeping: the verifier then sees the two apart.
    #[inline(always)]
    fn capture_return_value(regs: *const pt_regs, frame: u64, probe: u32) {
        let Some(plan) = PLANS.get(probe) else {
            return;
        };
        if plan.return_steps == 0 {
            return;
        }
        let Some(key) = thread_key(frame, probe) else {
            return;
        };
        if let Some(call) = INFLIGHT.get_ptr_mut(&key) {
            // SAFETY: the in-flight value belongs to this thread's key; only its probes use it.
            capture::<false>(plan, regs, unsafe { &mut *call }, true);
        }
    }

    #[uprobe]
    pub fn koolkit_entry(ctx: ProbeContext) -> u32 {
        enter::<false, false>(&ctx)
    }

    /// The entry program for kernels without attach cookies.
    #[uprobe]
    pub fn koolkit_entry_by_address(ctx: ProbeContext) -> u32 {
        enter::<false, true>(&ctx)
    }

    /// The entry program for kernels that run uprobe-multi programs sleepable: its reads of
    /// user memory fault pages in (a string in a page the process has not touched yet). It
    /// takes no stacks (sleepable programs cannot use stack-trace maps) and logs nothing.
    #[uprobe(sleepable)]
    pub fn koolkit_entry_sleepable(ctx: ProbeContext) -> u32 {
        enter::<true, false>(&ctx)
    }

    #[inline(always)]
    fn enter<const SLEEPABLE: bool, const BY_ADDRESS: bool>(ctx: &ProbeContext) -> u32 {
        let Some(config) = config() else {
            return 0;
        };
        if config.flags & config_flags::ENABLED == 0 {
            return 0;
        }
        let Some(pid_tgid) = current_pid_tgid(Some(config)) else {
            return 0;
        };
        if !traced(config, (pid_tgid >> 32) as u32) || !selected_thread(config, pid_tgid) {
            return 0;
        }
        let Some(cookie) = probe_cookie::<BY_ADDRESS>(ctx.regs, pid_tgid, false) else {
            return 0;
        };
        let probe = cookie as u32;
        let plan = match PLANS.get(probe) {
            Some(plan) if plan.flags & plan_flags::PRESENT != 0 => plan,
            _ => {
                count(Counter::NoPlan);
                if !SLEEPABLE {
                    warn!(ctx, "koolkit-trace: probe {} has no plan", probe);
                }
                return 0;
            }
        };
        let go = plan.flags & plan_flags::GO != 0;
        let key = if go {
            // SAFETY: `ctx.regs` is the program context.
            let Some(key) = go_key(unsafe { &*ctx.regs }, pid_tgid, probe) else {
                count(Counter::NoGoroutine);
                return 0;
            };
            key
        } else {
            InflightKey {
                pid_tgid,
                // The slot of the return address, where every way out finds the stack pointer.
                // SAFETY: `ctx.regs` is the program context.
                frame: unsafe { (*ctx.regs).rsp }.wrapping_add(u64::from(plan.entry_sp_adjust)),
                probe_id: probe,
                _pad: 0,
            }
        };
        // A goroutine keeps its own shadow: its calls move between threads.
        let owner = Owner::of(&key, go);
        // Counted in the kernel and nothing captured: the shadow alone holds the call, unless
        // it has no room (then it is parked in the in-flight map, untracked, as any call).
        // One call site of the shadow's bookkeeping for both: its loops are what the verifier
        // spends its time on.
        let shadow_only = config.flags & config_flags::SKIP_CAPTURE != 0;
        let entry_ns = if shadow_only {
            // SAFETY: reading the monotonic clock has no preconditions.
            unsafe { bpf_ktime_get_ns() }
        } else {
            0
        };
        let tracked = park_in_shadow(
            owner,
            owner.frame_of(&key),
            probe,
            entry_ns,
            !BY_ADDRESS || go,
        );
        if shadow_only && tracked {
            return 0;
        }
        // Without cookies a thread's return finds its probe in the shadow alone: a call the
        // shadow has no room for could never be completed.
        if BY_ADDRESS && !tracked && !go {
            count(Counter::ShadowFull);
            return 0;
        }
        // Park a zeroed call under this thread's key, then fill it in place: only this
        // thread's return can reach the key, so preemption cannot mix two calls' data.
        if INFLIGHT
            .insert(&key, &ZERO_CALL, BPF_NOEXIST as u64)
            .is_err()
        {
            // A call of this probe at this very frame never returned (a longjmp or an
            // unwinding past it). One its thread's shadow tracked was counted abandoned when
            // the shadow was settled above; one past the shadow's depth is counted here,
            // before its entry is replaced.
            if let Some(old) = INFLIGHT.get_ptr(&key)
                // SAFETY: a value of this thread's key, only read.
                && unsafe { (*old).header.exit_ns } == 0
            {
                count(Counter::Abandoned);
            }
            if INFLIGHT.insert(&key, &ZERO_CALL, 0).is_err() {
                // A call its shadow tracks is counted by its return (no entry to pair).
                if !tracked {
                    count(Counter::InflightFull);
                }
                return 0;
            }
        }
        let Some(call) = INFLIGHT.get_ptr_mut(&key) else {
            if !tracked {
                count(Counter::InflightFull);
            }
            return 0;
        };
        // SAFETY: the value was just inserted under a key only this thread uses.
        let call = unsafe { &mut *call };
        if tracked {
            call.header.exit_ns = inflight_marks::TRACKED;
        }
        call.header.kind = EventKind::Call as u32;
        call.header.probe_id = probe;
        call.header.pid = (pid_tgid >> 32) as u32;
        call.header.tid = pid_tgid as u32;
        // Nothing captured, nothing to decode (a call counted in the kernel that is shown
        // running at stop).
        call.header.payload_len = if shadow_only {
            0
        } else {
            plan.payload_len.min(MAX_PAYLOAD as u32)
        };
        if plan.go_types != 0 {
            // The probe is at `entry_address` in the file: the difference is the load bias.
            // SAFETY: `ctx.regs` is the program context; a uprobe sees its own address in rip.
            let bias = unsafe { (*ctx.regs).rip }.wrapping_sub(plan.entry_address);
            call.go_types = plan.go_types.wrapping_add(bias);
        }
        if config.flags & config_flags::SKIP_CAPTURE == 0 {
            capture::<SLEEPABLE>(plan, ctx.regs, call, false);
        }
        // SAFETY: reading the monotonic clock has no preconditions. Stamped last, so the
        // capture is not part of the latency.
        call.header.entry_ns = unsafe { bpf_ktime_get_ns() };
        0
    }

    /// Settles the thread's parked calls for a new call at `frame` and parks this one (with
    /// its entry time, when the shadow alone holds it); returns whether it is now tracked
    /// there.
    #[inline(always)]
    fn park_in_shadow(
        owner: Owner,
        frame: u64,
        probe: u32,
        entry_ns: u64,
        untracked_allowed: bool,
    ) -> bool {
        let shadow = owner.shadow_key();
        if THREADS.get_ptr_mut(&shadow).is_none() && THREADS.insert(&shadow, &NO_CALLS, 0).is_err()
        {
            return false;
        }
        let Some(thread) = THREADS.get_ptr_mut(&shadow) else {
            return false;
        };
        // SAFETY: the value belongs to this thread's (or goroutine's) key; only its probes
        // use it, and a goroutine runs on one thread at a time.
        let thread = unsafe { &mut *thread };
        settle_entry(thread, owner, frame, probe);
        let depth = thread.depth as usize;
        if depth >= THREAD_DEPTH {
            if untracked_allowed {
                thread.untracked = thread.untracked.saturating_add(1);
            }
            return false;
        }
        let slot = depth & (THREAD_DEPTH - 1);
        thread.frames[slot] = frame;
        thread.probes[slot] = probe;
        thread.entries[slot] = entry_ns;
        thread.depth += 1;
        true
    }

    /// A return of a call its thread could not remember (past `THREAD_DEPTH`) was seen.
    #[inline(always)]
    fn forget_untracked(thread: Option<*mut ThreadCalls>, parked: bool) {
        if let (Some(thread), false) = (thread, parked) {
            // SAFETY: the value belongs to this thread's key; only its probes use it.
            let thread = unsafe { &mut *thread };
            thread.untracked = thread.untracked.saturating_sub(1);
        }
    }

    #[uretprobe]
    pub fn koolkit_return(ctx: RetProbeContext) -> u32 {
        // SAFETY: reading the monotonic clock has no preconditions; read first so the
        // bookkeeping below is not part of the latency.
        let exit_ns = unsafe { bpf_ktime_get_ns() };
        // SAFETY: `ctx.regs` is the program's own context; the helper only reads the cookie.
        let probe = unsafe { bpf_get_attach_cookie(ctx.regs.cast()) } as u32;
        // SAFETY: `ctx.regs` is the program context.
        let (sp, ret) = unsafe { ((*ctx.regs).rsp, (*ctx.regs).rax) };
        let frame = sp.wrapping_sub(RETURN_SP_ADJUST);
        capture_return_value(ctx.regs, frame, probe);
        complete_thread_call(frame, probe, exit_ns, ret, false);
        0
    }

    /// The return program for kernels without attach cookies: the return fires at the
    /// caller's address, so the probe is the one its thread's shadow parked at this frame.
    #[uretprobe]
    pub fn koolkit_return_by_shadow(ctx: RetProbeContext) -> u32 {
        // SAFETY: reading the monotonic clock has no preconditions; read first so the
        // bookkeeping below is not part of the latency.
        let exit_ns = unsafe { bpf_ktime_get_ns() };
        // SAFETY: `ctx.regs` is the program context.
        let (sp, ret) = unsafe { ((*ctx.regs).rsp, (*ctx.regs).rax) };
        let Some(pid_tgid) = current_pid_tgid(config()) else {
            return 0;
        };
        let frame = sp.wrapping_sub(RETURN_SP_ADJUST);
        // A call entered before tracing started was never parked: no loss.
        if let Some(probe) = shadow_probe(pid_tgid, frame) {
            capture_return_value(ctx.regs, frame, probe);
            complete_thread_call(frame, probe, exit_ns, ret, false);
        }
        0
    }

    /// Where a return stands: (wake-up threshold, recording enabled). Returns are not gated
    /// on ENABLED: a call parked before the stop still completes.
    #[inline(always)]
    fn return_settings() -> (u32, bool) {
        let config = config();
        (
            config.map_or(0, |c| c.wakeup_bytes),
            config.is_some_and(|c| c.flags & config_flags::ENABLED != 0),
        )
    }

    /// The in-flight key of this thread's call of `probe` whose return address was at `frame`.
    #[inline(always)]
    fn thread_key(frame: u64, probe: u32) -> Option<InflightKey> {
        Some(InflightKey {
            pid_tgid: current_pid_tgid(config())?,
            frame,
            probe_id: probe,
            _pad: 0,
        })
    }

    /// Completes the call of `probe` whose return address was at `frame` on this thread.
    #[inline(always)]
    fn complete_thread_call(frame: u64, probe: u32, exit_ns: u64, ret: u64, tail_call: bool) {
        let (wakeup_bytes, enabled) = return_settings();
        let Some(key) = thread_key(frame, probe) else {
            return;
        };
        settle_and_complete(
            Owner::Thread {
                pid_tgid: key.pid_tgid,
            },
            &key,
            exit_ns,
            ret,
            tail_call,
            None,
            enabled,
            wakeup_bytes,
        );
    }

    /// Settles the shadow of the returning call under `key` (calls deeper than it are
    /// abandoned) and completes it; a Go call also takes its results from `go_regs`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn settle_and_complete(
        owner: Owner,
        key: &InflightKey,
        exit_ns: u64,
        ret: u64,
        tail_call: bool,
        go_regs: Option<&pt_regs>,
        enabled: bool,
        wakeup_bytes: u32,
    ) {
        let probe = key.probe_id;
        let shadow = owner.shadow_key();
        let thread = THREADS.get_ptr_mut(&shadow);
        let (in_shadow, untracked) = match thread {
            Some(thread) => {
                // SAFETY: the value belongs to this thread's key; only its probes use it.
                let thread = unsafe { &mut *thread };
                let parked = settle_return(thread, owner, owner.frame_of(key), probe);
                (parked, thread.untracked > 0)
            }
            None => (None, false),
        };
        let parked = in_shadow.is_some();
        match in_shadow {
            Some(entry_ns) if entry_ns != 0 => {
                // Parked in the shadow alone: counted, and nothing else to do.
                if let Some(config) = config() {
                    let returned = Returned {
                        probe,
                        latency: exit_ns.wrapping_sub(entry_ns),
                        exit_ns,
                        call: None,
                    };
                    count_call(config, &returned);
                }
            }
            _ => match INFLIGHT.get_ptr_mut(key) {
                // A call parked (or parked past what its thread remembers) whose entry is
                // gone was evicted from the in-flight map; any other was entered before
                // tracing started (or after it stopped).
                None => {
                    if enabled && (parked || untracked) {
                        count(Counter::LostEntry);
                        forget_untracked(thread, parked);
                    }
                }
                Some(call) => {
                    // SAFETY: the in-flight value stays valid until `complete` removes it;
                    // only this thread's return can complete this key.
                    let call = unsafe { &mut *call };
                    match call.header.exit_ns {
                        // Counted abandoned when its thread seemed to leave it; it returned
                        // after all.
                        inflight_marks::ABANDONED => add(Counter::Abandoned, u64::MAX),
                        inflight_marks::TRACKED => {}
                        _ => forget_untracked(thread, parked),
                    }
                    if let Some(regs) = go_regs {
                        copy_go_results(regs, call);
                    }
                    complete(call, key, exit_ns, ret, tail_call, wakeup_bytes);
                }
            },
        }
        // A goroutine's shadow goes once nothing of it is parked: a Go program runs many more
        // goroutines than the map holds. A thread's stays for its next call (a remove and an
        // insert per call cost more than the rest of the bookkeeping; the map is LRU, so
        // idle threads' shadows are the first to go when it fills).
        if let (Some(thread), Owner::Goroutine { .. }) = (thread, owner) {
            // SAFETY: the value belongs to this goroutine's key; only its probes use it.
            let idle = unsafe { (*thread).depth == 0 && (*thread).untracked == 0 };
            if idle {
                let _ = THREADS.remove(&shadow);
            }
        }
    }

    /// The in-flight key of a Go call: the goroutine (its `g`, from R14, in the process) and
    /// the distance of the stack pointer below the top of the goroutine's stack, which stays
    /// the same when the runtime copies the stack elsewhere and tells recursive calls apart.
    #[inline(always)]
    fn go_key(regs: &pt_regs, pid_tgid: u64, probe: u32) -> Option<InflightKey> {
        let g = regs.r14;
        let stack_hi = read_user_u64(g.wrapping_add(GO_G_STACK_HI))?;
        Some(InflightKey {
            pid_tgid: g,
            frame: stack_hi.wrapping_sub(regs.rsp),
            probe_id: probe,
            // A `g` is an address of its process: the process keeps keys of two apart.
            _pad: (pid_tgid >> 32) as u32,
        })
    }

    /// A call that returned, as the filters and the kernel's tallies see it.
    #[derive(Clone, Copy)]
    struct Returned<'a> {
        probe: u32,
        latency: u64,
        exit_ns: u64,
        /// The call as parked in the in-flight map, with its arguments; `None` for one
        /// parked in its thread's shadow alone.
        call: Option<&'a InFlightCall>,
    }

    /// Whether a returned call of `probe` is left out as asked: outside the latency bounds,
    /// not meeting its probe's predicate (tested on `call`, which only a call parked in the
    /// in-flight map has), not the one in `sample_every` of its probe on this CPU, or over
    /// its probe's rate. In that order: a call another filter leaves out takes
    /// no sample count and no token.
    #[inline(always)]
    fn filtered_out(config: &Config, returned: &Returned<'_>) -> bool {
        let Returned {
            probe,
            latency,
            exit_ns,
            call,
        } = *returned;
        let too_fast = config.min_latency_ns != 0 && latency < config.min_latency_ns;
        let too_slow = config.max_latency_ns != 0 && latency > config.max_latency_ns;
        if too_fast || too_slow {
            return true;
        }
        if let Some(call) = call
            && config.flags & config_flags::PREDICATES != 0
            && !meets_predicate(call)
        {
            return true;
        }
        if config.sample_every > 1
            && let Some(seen) = SAMPLED.get_ptr_mut(probe)
        {
            // SAFETY: this CPU's slot of the probe, a valid aligned u64. Not atomic: a
            // program preempting this one on the CPU can only make the sampling a call less
            // even.
            let n = unsafe {
                let n = *seen;
                *seen = n.wrapping_add(1);
                n
            };
            if !n.is_multiple_of(u64::from(config.sample_every)) {
                return true;
            }
        }
        config.rate_interval_ns != 0 && over_rate(config, probe, exit_ns)
    }

    /// Whether a call of `probe` at `now` finds its token bucket empty; takes a token if
    /// not. The bucket is shared by every CPU and updated without a lock: two calls
    /// returning at the same instant on two CPUs may both take the last token.
    #[inline(always)]
    fn over_rate(config: &Config, probe: u32, now: u64) -> bool {
        let Some(bucket) = RATE_BUCKETS.get_ptr_mut(probe) else {
            return false;
        };
        // SAFETY: the probe's bucket, a valid aligned value of the array.
        let bucket = unsafe { &mut *bucket };
        let next = if bucket.next_ns > now {
            bucket.next_ns
        } else {
            now
        };
        let after = next.wrapping_add(config.rate_interval_ns);
        if after.wrapping_sub(now) > config.rate_burst_ns {
            return true;
        }
        bucket.next_ns = after;
        false
    }

    /// Whether `call` meets every condition of its probe's predicate (a probe without one
    /// lets every call through).
    #[inline(always)]
    fn meets_predicate(call: &InFlightCall) -> bool {
        // SAFETY: the value is only read; user space writes predicates before enabling.
        let Some(predicate) = (unsafe { PREDICATES.get(&call.header.probe_id) }) else {
            return true;
        };
        for index in 0..MAX_CONDITIONS {
            if index as u32 >= predicate.count {
                break;
            }
            if !condition_holds(&predicate.conditions[index], call) {
                return false;
            }
        }
        true
    }

    /// The word at payload offset `offset` of `call`, if step `step` read its slot.
    #[inline(always)]
    fn slot_word(call: &InFlightCall, step: u8, offset: u16) -> Option<u64> {
        let step = (step as usize) & (STATUS_BYTES - 1);
        if call.payload[step] != step_status::OK {
            return None;
        }
        let at = (offset as usize) & (MAX_PAYLOAD - 1);
        // SAFETY: `at < MAX_PAYLOAD`, and `PAYLOAD_BUFFER` has 8 bytes and more after it.
        Some(unsafe { call.payload.as_ptr().add(at).cast::<u64>().read_unaligned() })
    }

    /// The integer of `width` bytes (1 to 8; 0: all 8) that `raw` starts with, sign-extended
    /// when `signed`.
    #[inline(always)]
    fn integer_of(raw: u64, width: u32, signed: bool) -> u64 {
        let bits = 8 * width;
        if bits == 0 || bits >= 64 {
            raw
        } else if signed {
            (((raw << (64 - bits)) as i64) >> (64 - bits)) as u64
        } else {
            raw & ((1u64 << bits) - 1)
        }
    }

    /// Whether one condition holds for `call`. A slot its step could not read holds no
    /// value, and meets no condition.
    #[inline(always)]
    fn condition_holds(condition: &Condition, call: &InFlightCall) -> bool {
        let raw = if condition.operand == operand::RETURN {
            call.header.ret
        } else {
            match slot_word(call, condition.step, condition.offset) {
                Some(raw) => raw,
                None => return false,
            }
        };
        let width = condition.width as u32;
        if condition.compare == compare::TEXT_EQ || condition.compare == compare::TEXT_PREFIX {
            let length = if width == 4 { raw as u32 as u64 } else { raw };
            let absent = if width == 4 {
                length == u64::from(u32::MAX)
            } else {
                length == u64::MAX
            };
            let text_len = condition.text_len as u64;
            if absent
                || (condition.compare == compare::TEXT_EQ && length != text_len)
                || length < text_len
            {
                return false;
            }
            // The bytes follow the length prefix; `at` is masked, the prefix 4 or 8 bytes.
            let at = (condition.offset as usize) & (MAX_PAYLOAD - 1);
            let start = at + if width == 4 { 4 } else { 8 };
            return text_matches(condition, call, start);
        }
        let left = integer_of(raw, width, condition.signed != 0);
        let right = condition.value;
        let ordering = if condition.signed != 0 {
            (left as i64).cmp(&(right as i64))
        } else {
            left.cmp(&right)
        };
        match condition.compare {
            compare::EQ => ordering.is_eq(),
            compare::NE => ordering.is_ne(),
            compare::LT => ordering.is_lt(),
            compare::GT => ordering.is_gt(),
            compare::LE => ordering.is_le(),
            compare::GE => ordering.is_ge(),
            _ => false,
        }
    }

    /// Whether the bytes of the string at payload offset `start` (below `MAX_PAYLOAD + 8`)
    /// begin with the condition's text (the lengths were compared already).
    #[inline(always)]
    fn text_matches(condition: &Condition, call: &InFlightCall, start: usize) -> bool {
        for i in 0..MAX_CONDITION_TEXT {
            if i >= condition.text_len as usize {
                break;
            }
            // The index goes through a volatile slot and is masked there: otherwise the
            // compiler walks a pointer along `text` instead, and verifiers before 5.13 cannot
            // bound a pointer moved in a loop (they refuse the program).
            let mut slot = i;
            // SAFETY: a read of this local, which is initialised.
            let i = unsafe { core::ptr::read_volatile(&mut slot) } & (MAX_CONDITION_TEXT - 1);
            // Masked, not only compared: the verifier must see the index stay inside the
            // payload (`start` < MAX_PAYLOAD + 8, plus less than MAX_CONDITION_TEXT).
            let at = start + i;
            // SAFETY: `at < MAX_PAYLOAD + 8 + MAX_CONDITION_TEXT <= PAYLOAD_BUFFER`.
            let byte = unsafe { *call.payload.as_ptr().add(at) };
            if byte != condition.text[i] {
                return false;
            }
        }
        true
    }

    /// Counts a returned call of `probe` (`call`, when it was parked in the in-flight map)
    /// where the kernel keeps count: left out by a filter (counted, per probe too), or under
    /// `--histogram` and `--stats` added to its latency's bucket and its probe's statistics.
    /// Returns whether that is all there is to do (nothing is emitted).
    #[inline(always)]
    fn count_call(config: &Config, returned: &Returned<'_>) -> bool {
        let Returned {
            probe,
            latency,
            call,
            ..
        } = *returned;
        if filtered_out(config, returned) {
            count(Counter::Filtered);
            if let Some(slot) = FILTERED.get_ptr_mut(probe) {
                // SAFETY: the slot is a valid, aligned u64 of this CPU's counters; atomic as
                // for COUNTERS.
                unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, 1) };
            }
            return true;
        }
        if config.flags & config_flags::AGGREGATE == 0 {
            return false;
        }
        let (by_argument, argument) = match call {
            Some(call) if config.flags & config_flags::BY_ARGUMENT != 0 => {
                (true, grouping_argument(call))
            }
            _ => (false, 0),
        };
        let stats = if by_argument {
            let key = HistogramKey {
                probe,
                bucket: 0,
                argument,
            };
            match STATS_BY_ARGUMENT.get_ptr_mut(&key) {
                Some(stats) => Some(stats),
                None => {
                    let _ = STATS_BY_ARGUMENT.insert(&key, &LatencyStats::default(), 0);
                    STATS_BY_ARGUMENT.get_ptr_mut(&key)
                }
            }
        } else {
            STATS.get_ptr_mut(probe)
        };
        if let Some(stats) = stats {
            // SAFETY: this CPU's value of the probe; per CPU, so plain updates (a
            // preempting program can only lose one call's share, never corrupt).
            let stats = unsafe { &mut *stats };
            if stats.calls == 0 || latency < stats.min_ns {
                stats.min_ns = latency;
            }
            if latency > stats.max_ns {
                stats.max_ns = latency;
            }
            stats.calls += 1;
            stats.total_ns = stats.total_ns.wrapping_add(latency);
        }
        let bucket = HistogramKey {
            probe,
            bucket: histogram_bucket(latency),
            argument,
        };
        match HISTOGRAMS.get_ptr_mut(&bucket) {
            // SAFETY: this CPU's value of the key, a valid aligned u64; per CPU, so a
            // plain add (a preempting program can only lose one count, never corrupt).
            Some(n) => unsafe { *n += 1 },
            None => {
                if HISTOGRAMS.insert(&bucket, &1, 0).is_err() {
                    count(Counter::HistogramFull);
                }
            }
        }
        true
    }

    /// Stamps the return of the parked `call` under `key`, emits it and forgets it.
    #[inline(always)]
    fn complete(
        call: &mut InFlightCall,
        key: &InflightKey,
        exit_ns: u64,
        ret: u64,
        tail_call: bool,
        wakeup_bytes: u32,
    ) {
        call.header.exit_ns = exit_ns;
        call.header.ret = ret;
        let latency = exit_ns.wrapping_sub(call.header.entry_ns);
        if let Some(config) = config()
            && count_call(
                config,
                &Returned {
                    probe: call.header.probe_id,
                    latency,
                    exit_ns,
                    call: Some(call),
                },
            )
        {
            let _ = INFLIGHT.remove(key);
            return;
        }
        // SAFETY: no preconditions.
        let cpu = unsafe { bpf_get_smp_processor_id() };
        call.header.cpu = if tail_call {
            cpu | ENDED_BY_TAIL_CALL
        } else {
            cpu
        };
        let payload_len = call.header.payload_len as usize;
        if payload_len <= MAX_PAYLOAD {
            let len = EVENT_HEADER_SIZE + payload_len;
            // SAFETY: `len <= size_of::<InFlightCall>()`, so the slice stays inside the call.
            let bytes = unsafe {
                core::slice::from_raw_parts((call as *const InFlightCall).cast::<u8>(), len)
            };
            let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
            let wake = if pending >= wakeup_bytes as u64 {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
            if EVENTS.output::<[u8]>(bytes, wake as u64).is_err() {
                count(Counter::RingFull);
            }
        }
        let _ = INFLIGHT.remove(key);
    }

    /// The value of the argument `--by-arg` groups `call`'s probe by, sign-extended from its
    /// width; [`UNREADABLE_ARGUMENT`] when its step could not read it.
    #[inline(always)]
    fn grouping_argument(call: &InFlightCall) -> u64 {
        let Some(plan) = PLANS.get(call.header.probe_id) else {
            return UNREADABLE_ARGUMENT;
        };
        let width = plan.by_argument_width as u32;
        if width == 0 {
            return 0;
        }
        match slot_word(call, plan.by_argument_step, plan.by_argument_offset) {
            Some(raw) => integer_of(raw, width, plan.by_argument_signed != 0),
            None => UNREADABLE_ARGUMENT,
        }
    }

    /// Copies a Go function's result registers into its parked `call`, where its plan says,
    /// and runs the plan's steps that read results (strings, interfaces' types).
    #[inline(always)]
    fn copy_go_results(regs: &pt_regs, call: &mut InFlightCall) {
        let Some(plan) = PLANS.get(call.header.probe_id) else {
            return;
        };

        let words = (plan.go_results >> 16) as usize;
        let offset = (plan.go_results & 0xffff) as usize;
        if words == 0 || offset + 8 * GO_RESULT_WORDS > PAYLOAD_BUFFER {
            return;
        }
        let values = [
            regs.rax, regs.rbx, regs.rcx, regs.rdi, regs.rsi, regs.r8, regs.r9, regs.r10, regs.r11,
        ];
        for (i, value) in values.iter().enumerate() {
            if i >= words {
                break;
            }
            let at = offset + 8 * i;
            if at + 8 > PAYLOAD_BUFFER {
                break;
            }
            // SAFETY: `at + 8 <= PAYLOAD_BUFFER`, inside the parked call's payload, which only
            // this goroutine's probes touch.
            unsafe {
                core::ptr::write_unaligned(call.payload.as_mut_ptr().add(at).cast::<u64>(), *value)
            };
        }
    }

    /// A way out of a function (a `ret`, or a jump that leaves it): the stack pointer is at the
    /// slot of the return address, where it was at the entry probe, so the key matches the
    /// entry's. A Go call is keyed by its goroutine; any other by its thread. A conditional
    /// way out (a `jne` tail call) counts only when its condition holds.
    #[uprobe]
    pub fn koolkit_ret_site(ctx: ProbeContext) -> u32 {
        ret_site::<false>(&ctx)
    }

    /// The way-out program for kernels without attach cookies.
    #[uprobe]
    pub fn koolkit_ret_site_by_address(ctx: ProbeContext) -> u32 {
        ret_site::<true>(&ctx)
    }

    #[inline(always)]
    fn ret_site<const BY_ADDRESS: bool>(ctx: &ProbeContext) -> u32 {
        // SAFETY: reading the monotonic clock has no preconditions; read first so the
        // bookkeeping below is not part of the latency.
        let exit_ns = unsafe { bpf_ktime_get_ns() };
        let cookie = if BY_ADDRESS {
            let Some(config) = config() else {
                return 0;
            };
            let Some(pid_tgid) = current_pid_tgid(Some(config)) else {
                return 0;
            };
            // Only traced processes flag their addresses as unknown.
            if !traced(config, (pid_tgid >> 32) as u32) {
                return 0;
            }
            let Some(cookie) = probe_cookie::<true>(ctx.regs, pid_tgid, true) else {
                return 0;
            };
            cookie
        } else {
            // SAFETY: `ctx.regs` is the program context; the helper only reads the cookie.
            unsafe { bpf_get_attach_cookie(ctx.regs.cast()) }
        };
        let probe = cookie as u32;
        // SAFETY: `ctx.regs` is the program context.
        let regs = unsafe { &*ctx.regs };
        let condition = (cookie >> exit_condition::SHIFT) as u8;
        if !exit_condition::holds(condition, regs.eflags) {
            return 0;
        }
        let Some(plan) = PLANS.get(probe) else {
            return 0;
        };
        if plan.flags & plan_flags::GO == 0 {
            let tail_call = cookie & exit_condition::TAIL_CALL != 0;
            // A tail call's value is its callee's, not returned here.
            if !tail_call {
                capture_return_value(ctx.regs, regs.rsp, probe);
            }
            complete_thread_call(regs.rsp, probe, exit_ns, regs.rax, tail_call);
            return 0;
        }
        let (wakeup_bytes, enabled) = return_settings();
        let Some(pid_tgid) = current_pid_tgid(config()) else {
            return 0;
        };
        let Some(key) = go_key(regs, pid_tgid, probe) else {
            return 0;
        };
        // The results' strings and interfaces, read before the bookkeeping below: the
        // verifier then sees the two apart.
        if plan.return_steps != 0
            && let Some(call) = INFLIGHT.get_ptr_mut(&key)
        {
            // SAFETY: the in-flight value belongs to this goroutine's key; only its probes use it.
            capture::<false>(plan, regs, unsafe { &mut *call }, true);
        }
        // Frames a panic unwound never return: the goroutine's next return above them proves
        // them abandoned. A call entered before tracing started has no entry, and no loss.
        settle_and_complete(
            Owner::of(&key, true),
            &key,
            exit_ns,
            regs.rax,
            false,
            Some(regs),
            enabled,
            wakeup_bytes,
        );
        0
    }

    /// `sched:sched_process_fork`: a child of a selected process is selected too.
    #[tracepoint]
    pub fn koolkit_fork(ctx: TracePointContext) -> u32 {
        let Some(config) = config() else {
            return 0;
        };
        if config.flags & config_flags::FOLLOW_FORKS == 0 {
            return 0;
        }
        let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
        // SAFETY: the value is only tested for presence.
        if unsafe { TGIDS.get(&parent) }.is_none() {
            return 0;
        }
        // SAFETY: the helper behind `read_at` checks the address; the offset comes from the
        // tracepoint's format file.
        let Ok(child) = (unsafe { ctx.read_at::<i32>(config.fork_child_pid_offset as usize) })
        else {
            return 0;
        };
        // A new thread's id lands here too; the exit program takes it out again.
        if TGIDS.insert(&(child as u32), &1, 0).is_err() {
            count(Counter::TgidsFull);
        }
        0
    }

    /// `sched:sched_process_exit`, in the exiting thread: forget its parked calls; when a
    /// watched process dies with it, note how (its `task_struct.exit_code`); with
    /// `--children`, forget the thread (the fork program added its id) or the whole process.
    #[tracepoint]
    pub fn koolkit_exit(ctx: TracePointContext) -> u32 {
        let config = config();
        let Some(pid_tgid) = current_pid_tgid(config) else {
            return 0;
        };
        let _ = THREADS.remove(&pid_tgid);
        let Some(config) = config else {
            return 0;
        };
        let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
        // The process is gone with its last thread (without the field: with its main thread).
        let group_dead = match config.exit_group_dead_offset {
            0 => tid == tgid,
            // SAFETY: the helper behind `read_at` checks the address; the offset comes from
            // the tracepoint's format file.
            offset => unsafe { ctx.read_at::<u8>(offset as usize) }.is_ok_and(|dead| dead != 0),
        };
        if group_dead
            && config.task_exit_code_offset != 0
            && let Some(status) = EXITS.get_ptr_mut(&tgid)
        {
            // SAFETY: no preconditions; the task is the exiting thread, alive during its exit.
            let task = unsafe { bpf_get_current_task() };
            let field = task.wrapping_add(u64::from(config.task_exit_code_offset));
            // SAFETY: the helper checks the address; the offset comes from the kernel's BTF.
            if let Ok(code) = unsafe { bpf_probe_read_kernel(field as *const i32) } {
                // SAFETY: the value is this process's entry, written only here.
                unsafe { *status = code as u32 & 0xffff };
            }
        }
        if config.flags & config_flags::FOLLOW_FORKS == 0 {
            return 0;
        }
        if tid != tgid {
            let _ = TGIDS.remove(&tid);
        }
        if group_dead {
            let _ = TGIDS.remove(&tgid);
        }
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
