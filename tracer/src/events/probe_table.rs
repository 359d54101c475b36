//! What each probe id means to user space: the function, its object and how to read its
//! payload. Events carry only the id; this table turns it back into names. It is the part of a
//! trace that must travel with the events for them to be read anywhere else.

use serde::{Deserialize, Serialize};

use crate::{
    plan::{ArgSlot, Plan, ReturnValue, SlotValue},
    symbols::{ProbeSite, SourceLocation, placement::CostClass},
};

/// One probe: id `id` fires at the entry of `function` in `object`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub id: u32,
    pub function: String,
    /// The object's path as the target sees it.
    pub object: String,
    pub address: u64,
    /// File offset of the function's entry, and of the probe site (past `endbr64` & co).
    pub file_offset: u64,
    pub probe_offset: u64,
    /// What one hit of the entry probe costs.
    pub cost: CostClass,
    /// Where the function is defined, if DWARF says.
    pub source: Option<SourceLocation>,
    pub args: Vec<ArgSlot>,
    /// How the return value is shown; `None` for functions returning nothing.
    pub ret: Option<ReturnValue>,
    /// The GNU build-id of the object, in hex: which build the calls came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// A Go function's goroutine id in the payload (trace files before it have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goroutine: Option<SlotValue>,
    /// A Go function's results, when there is more than the return value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<ArgSlot>,
    /// `--stack`: where the id of the call's user stack is in the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<SlotValue>,
    /// `--stack`: where the return address at the entry is in the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<SlotValue>,
}

impl ProbeInfo {
    /// The object's file name.
    pub fn object_name(&self) -> &str {
        crate::symbols::file_name(&self.object)
    }
}

/// Probes by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTable {
    probes: Vec<ProbeInfo>,
}

impl ProbeTable {
    /// Site `i` with plan `i` becomes probe id `i`.
    pub fn new(sites: &[ProbeSite], plans: &[Plan]) -> Self {
        let probes = sites
            .iter()
            .zip(plans)
            .enumerate()
            .map(|(id, (site, plan))| ProbeInfo {
                id: id as u32,
                function: site.function.clone(),
                object: site.object.path.clone(),
                address: site.address,
                file_offset: site.file_offset,
                probe_offset: site.probe_offset,
                cost: site.cost,
                source: site.source.clone(),
                args: plan.args.clone(),
                ret: plan.ret.clone(),
                build_id: site.build_id.clone(),
                goroutine: plan.goroutine.clone(),
                results: plan.results.clone(),
                stack: plan.stack.clone(),
                caller: plan.caller.clone(),
            })
            .collect();
        Self { probes }
    }

    /// A table of probes already numbered 0, 1, 2, ...
    pub fn from_probes(probes: Vec<ProbeInfo>) -> Self {
        debug_assert!(probes.iter().enumerate().all(|(i, p)| p.id as usize == i));
        Self { probes }
    }

    pub fn get(&self, id: u32) -> Option<&ProbeInfo> {
        self.probes.get(id as usize)
    }

    pub fn len(&self) -> usize {
        self.probes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ProbeInfo> {
        self.probes.iter()
    }
}
