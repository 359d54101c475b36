//! Which recorded calls `replay`, `report` and `export` look at.

use crate::{
    events::{CallEvent, probe_table::ProbeInfo},
    symbols::glob_match,
};

/// A filter over recorded calls; the default accepts everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Globs over function names; a call matches if any does.
    pub functions: Vec<String>,
    pub pid: Option<u32>,
    pub min_latency_ns: Option<u64>,
}

impl CallFilter {
    /// Whether calls of `probe` can pass at all (its function is one asked for); for calls
    /// counted in the kernel, which have no pid or latency of their own.
    pub fn accepts_function(&self, probe: Option<&ProbeInfo>) -> bool {
        probe.is_some_and(|probe| {
            self.pid.is_none()
                && self.min_latency_ns.is_none()
                && (self.functions.is_empty()
                    || self
                        .functions
                        .iter()
                        .any(|pattern| glob_match(pattern, &probe.function)))
        })
    }

    pub fn accepts(&self, event: &CallEvent, probe: &ProbeInfo) -> bool {
        self.pid.is_none_or(|pid| pid == event.pid)
            && self
                .min_latency_ns
                .is_none_or(|min| event.latency_ns() >= min)
            && (self.functions.is_empty()
                || self
                    .functions
                    .iter()
                    .any(|pattern| glob_match(pattern, &probe.function)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::placement::CostClass;
    use bytes::Bytes;

    #[test]
    fn filters_by_function_pid_and_latency() {
        let probe = ProbeInfo {
            id: 0,
            function: "shop::Cart::add".into(),
            object: "/bin/shop".into(),
            address: 0,
            file_offset: 0,
            probe_offset: 0,
            cost: CostClass::Emulated,
            source: None,
            args: Vec::new(),
            ret: None,
            build_id: None,
            goroutine: None,
            results: Vec::new(),
            stack: None,
            caller: None,
        };
        let event = CallEvent {
            probe_id: 0,
            pid: 7,
            tid: 7,
            cpu: 0,
            entry_ns: 0,
            exit_ns: 5_000,
            ret: 0,
            payload: Bytes::new(),
        };
        assert!(CallFilter::default().accepts(&event, &probe));
        let by_fn = |f: &str| CallFilter {
            functions: vec![f.into()],
            ..CallFilter::default()
        };
        assert!(by_fn("shop::*").accepts(&event, &probe));
        assert!(!by_fn("other").accepts(&event, &probe));
        assert!(
            !CallFilter {
                pid: Some(8),
                ..CallFilter::default()
            }
            .accepts(&event, &probe)
        );
        assert!(
            CallFilter {
                min_latency_ns: Some(5_000),
                ..CallFilter::default()
            }
            .accepts(&event, &probe)
        );
        assert!(
            !CallFilter {
                min_latency_ns: Some(5_001),
                ..CallFilter::default()
            }
            .accepts(&event, &probe)
        );
    }
}
