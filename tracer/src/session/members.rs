//! The processes of a group target while it is traced: asked again every [`RESCAN_INTERVAL`],
//! those that joined (a restarted container, a worker, a pod scaled up) are selected in the
//! kernel and labelled, those that left are deselected (their ids may be reused).

use std::{collections::HashSet, time::Duration};

use crate::{
    probes::Probes,
    target::{membership::Membership, pods::Workloads},
};

use super::summary::GroupTraced;

/// How often the membership is asked again.
pub(super) const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

pub(super) struct Members {
    membership: Membership,
    current: HashSet<u32>,
    ever: HashSet<u32>,
    joined: usize,
    /// The last lookup failure, said once until it changes.
    last_error: Option<String>,
}

impl Members {
    /// The group `membership` with `pids` already selected.
    pub fn new(membership: Membership, pids: &[u32]) -> Self {
        let current: HashSet<u32> = pids.iter().copied().collect();
        Self {
            membership,
            ever: current.clone(),
            current,
            joined: 0,
            last_error: None,
        }
    }

    /// Asks who belongs now: selects newcomers (labelling them in `workloads`), deselects
    /// leavers. Returns the newcomers.
    pub fn refresh(&mut self, probes: &mut Probes, workloads: &mut Workloads) -> Vec<u32> {
        let mut joined = Vec::new();
        let found = match self.membership.find() {
            Ok(found) => {
                self.last_error = None;
                found
            }
            Err(err) => {
                let message = err.to_string();
                if self.last_error.as_ref() != Some(&message) {
                    log::warn!("cannot tell which processes joined the target: {message}");
                    self.last_error = Some(message);
                }
                return joined;
            }
        };
        let now: HashSet<u32> = found.members.iter().map(|m| m.pid).collect();
        for member in &found.members {
            if self.current.contains(&member.pid) {
                continue;
            }
            if let Err(err) = probes.select(member.pid) {
                log::warn!("cannot trace process {}: {err}", member.pid);
                continue;
            }
            if let Some(labels) = &member.labels {
                workloads.add(member.pid, member.container_id.as_deref(), labels.clone());
            }
            log::info!("process {} joined the target", member.pid);
            joined.push(member.pid);
            if self.ever.insert(member.pid) {
                self.joined += 1;
            }
        }
        for &gone in self.current.difference(&now) {
            probes.deselect(gone);
        }
        self.current = now;
        joined
    }

    pub fn traced(&self) -> GroupTraced {
        GroupTraced {
            processes: self.ever.len(),
            joined: self.joined,
        }
    }
}
