//! The start line of a live trace: what is traced, how the probes were attached and what each
//! costs (`Tracing 3 functions in 1 object of process 4242 (uprobe-multi, attached in 2.1ms;
//! probes: 1 emulated, 2 single-step). Ctrl-C to stop.`).

use crate::{
    events::probe_table::ProbeTable,
    probes::Attached,
    sinks::units::{count, count_irregular, format_duration_ns},
    symbols::placement::CostClass,
    target::Target,
};

/// The traced process's descendants, when it was started: traced with it or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Traced { descendants: usize },
    NotTraced { descendants: usize },
}

fn describe_target(target: &Target, family: Family) -> String {
    match (target, family) {
        (Target::Process { pid }, Family::Traced { descendants }) => format!(
            "process {pid} and its descendants ({} now)",
            count_irregular(descendants as u64, "process", "processes")
        ),
        (Target::Process { pid }, _) => format!("process {pid}"),
        (Target::Binary { path }, _) => format!("every process running {}", path.display()),
        (Target::Processes { pids }, _) => format!(
            "{} and those that join",
            count_irregular(pids.len() as u64, "process", "processes")
        ),
    }
}

/// "2 emulated, 1 single-step": how many entry probes fall in each cost class.
fn cost_classes(table: &ProbeTable, refused: &[usize]) -> String {
    let mut classes: Vec<(CostClass, usize)> = Vec::new();
    for probe in table.iter().filter(|p| !refused.contains(&(p.id as usize))) {
        match classes.iter_mut().find(|(class, _)| *class == probe.cost) {
            Some((_, n)) => *n += 1,
            None => classes.push((probe.cost, 1)),
        }
    }
    classes.sort_by_key(|(class, _)| *class as u8);
    classes
        .iter()
        .map(|(class, n)| format!("{n} {class}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The line printed once every probe is attached.
pub fn attach_status(
    table: &ProbeTable,
    attached: &Attached,
    target: &Target,
    family: Family,
    zone: Option<&str>,
) -> String {
    let zone = zone.map_or_else(String::new, |zone| format!(" Times are {zone}."));
    let copies: std::collections::BTreeSet<&str> = table
        .iter()
        .map(|p| p.object.as_str())
        .filter(|o| o.ends_with(crate::target::DELETED_SUFFIX))
        .collect();
    let copies = if copies.is_empty() {
        String::new()
    } else {
        format!(
            " Also probing {} that running processes still use.",
            count_irregular(
                copies.len() as u64,
                "replaced copy of the file",
                "replaced copies of the file"
            )
        )
    };
    let untraced = match (target, family) {
        (Target::Process { pid }, Family::NotTraced { descendants }) if descendants > 0 => {
            format!(
                " Process {pid} has {} that {} not traced (--children traces them too).",
                count_irregular(descendants as u64, "child process", "child processes"),
                if descendants == 1 { "is" } else { "are" }
            )
        }
        _ => String::new(),
    };
    format!(
        "Tracing {} in {} of {} ({}, attached in {}; probes: {}).{copies}{untraced}{zone} \
         Ctrl-C to stop.",
        count((table.len() - attached.refused.len()) as u64, "function"),
        count(attached.objects as u64, "object"),
        describe_target(target, family),
        attached.mode,
        format_duration_ns(attached.elapsed.as_nanos() as u64),
        cost_classes(table, &attached.refused),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{plan::raw_register_args, probes::AttachMode, symbols::ProbeSite};

    #[test]
    fn the_start_line_counts_functions_objects_and_cost_classes() {
        let mut emulated = ProbeSite::named("compute", "/bin/demo");
        emulated.cost = CostClass::Emulated;
        let mut trapped = ProbeSite::named("sleepy", "/bin/demo");
        trapped.cost = CostClass::SingleStep;
        let plans = vec![raw_register_args(0).unwrap(); 2];
        let table = ProbeTable::new(&[emulated, trapped], &plans);
        let attached = Attached {
            mode: AttachMode::Multi,
            objects: 1,
            elapsed: Duration::from_micros(2100),
            refused: Vec::new(),
        };
        let process = Target::Process { pid: 4242 };
        let alone = Family::NotTraced { descendants: 0 };
        assert_eq!(
            attach_status(&table, &attached, &process, alone, None),
            "Tracing 2 functions in 1 object of process 4242 (uprobe-multi, attached in \
             2.10ms; probes: 1 emulated, 1 single-step). Ctrl-C to stop."
        );
        let parent = Family::NotTraced { descendants: 3 };
        assert!(
            attach_status(&table, &attached, &process, parent, Some("UTC+01:00 (CET)")).contains(
                "). Process 4242 has 3 child processes that are not traced (--children traces \
                 them too). Times are UTC+01:00 (CET). Ctrl-C"
            )
        );
        let family = Family::Traced { descendants: 1 };
        assert!(
            attach_status(&table, &attached, &process, family, None)
                .contains("of process 4242 and its descendants (1 process now) (")
        );
    }
}
