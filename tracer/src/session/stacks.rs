//! `--stack`: the user stack of each call, read from the kernel's stack map by the id its
//! payload carries and symbolized once per process and stack.

use std::{collections::HashMap, rc::Rc};

use aya::maps::{MapData, StackTraceMap};

use crate::{
    events::{CallEvent, probe_table::ProbeInfo},
    record::reader::{StackKey, stack_key},
    symbols::stacks::Symbolizer,
};

/// The stack walked from a function's first instructions lacks its caller: the frame
/// pointer is still the caller's, so the walk goes from the function to its caller's
/// caller. The return address at the entry is that caller: it goes second, unless the walk
/// has it already (a probe past the frame's setup).
fn with_caller(mut addresses: Vec<u64>, caller: Option<u64>) -> Vec<u64> {
    if let Some(caller) = caller
        && !addresses.is_empty()
        && addresses.get(1) != Some(&caller)
    {
        addresses.insert(1, caller);
    }
    addresses
}

/// Frames of a stack at most this many deep count as short (see [`Stacks::notes`]).
const SHORT_STACK: usize = 2;

pub(crate) struct Stacks {
    map: StackTraceMap<MapData>,
    symbolizer: Symbolizer,
    /// Symbolized stacks by process and stack id: a stack id names the same addresses for
    /// the whole trace (the map's entries are never replaced), but addresses mean different
    /// functions in different processes. With each, how many addresses it has (functions
    /// inlined at an address add lines, not depth).
    shown: HashMap<StackKey, (Rc<[String]>, usize)>,
    /// Calls with a stack, and those whose stack was short.
    pub calls: u64,
    pub short: u64,
    /// Calls whose stack the kernel could not store (its bucket held another stack).
    pub missing: u64,
    /// Stacks symbolized since the trace file last took them.
    pub fresh: Vec<crate::record::StackInfo>,
}

impl Stacks {
    /// Stacks read from `map`; those of processes gone by then are named from the maps of
    /// `traced`, the traced process (see [`Symbolizer::with_fallback`]).
    pub fn new(map: StackTraceMap<MapData>, traced: Option<u32>) -> Self {
        Self {
            map,
            symbolizer: Symbolizer::with_fallback(traced),
            shown: HashMap::new(),
            calls: 0,
            short: 0,
            missing: 0,
            fresh: Vec::new(),
        }
    }

    /// The symbolized stack of `event`, a call of `probe` (which takes stacks), innermost
    /// first.
    pub fn of(&mut self, event: &CallEvent, probe: &ProbeInfo) -> Option<Rc<[String]>> {
        let Some(key) = stack_key(event, probe) else {
            self.missing += 1;
            return None;
        };
        let (_, id, caller) = key;
        let (frames, depth) = match self.shown.get(&key) {
            Some(shown) => shown.clone(),
            None => {
                let Ok(trace) = self.map.get(&(id as u32), 0) else {
                    self.missing += 1;
                    return None;
                };
                // A return address a uretprobe replaced names nothing (the kernel puts the
                // caller in the walk itself on recent kernels, where the word read at the
                // entry may already be the trampoline).
                let symbolizer = &mut self.symbolizer;
                let caller = caller.filter(|&c| !symbolizer.is_trampoline(event.pid, c));
                let mut addresses =
                    with_caller(trace.frames().iter().map(|f| f.ip).collect(), caller);
                addresses.retain(|&address| !symbolizer.is_trampoline(event.pid, address));
                let frames: Rc<[String]> = self
                    .symbolizer
                    .frames(event.pid, &addresses)
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                self.shown.insert(key, (frames.clone(), addresses.len()));
                self.fresh.push(crate::record::StackInfo {
                    pid: event.pid,
                    stack_id: id,
                    caller,
                    frames: frames.to_vec(),
                });
                (frames, addresses.len())
            }
        };
        self.calls += 1;
        if depth <= SHORT_STACK {
            self.short += 1;
        }
        Some(frames)
    }

    /// What the summary says when most stacks were short, or some missing.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.calls > 0 && self.short * 2 > self.calls {
            notes.push(format!(
                "stacks are short: {} of {} calls had {SHORT_STACK} frames or fewer. The traced \
                 code was probably built without frame pointers (C/C++: -fno-omit-frame-pointer; \
                 Rust: -C force-frame-pointers=yes)",
                self.short, self.calls
            ));
        }
        if self.missing > 0 {
            notes.push(format!(
                "{} without a stack: the kernel's stack map had no room for theirs",
                crate::sinks::units::count_irregular(self.missing, "call", "calls")
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::with_caller;

    #[test]
    fn the_caller_goes_second_once() {
        assert_eq!(
            with_caller(vec![10, 30, 40], Some(20)),
            vec![10, 20, 30, 40]
        );
        assert_eq!(with_caller(vec![10, 20, 30], Some(20)), vec![10, 20, 30]);
        assert_eq!(with_caller(vec![10], None), vec![10]);
        assert_eq!(with_caller(Vec::new(), Some(20)), Vec::<u64>::new());
    }
}
