//! The output of `koolkit-trace list`: which functions can be traced, where they come from and
//! what a probe on each costs (like `bpftrace -l`, plus source positions and cost classes).

use std::{fmt::Write as _, io::Write as _};

use serde_json::json;

use super::args::ListArgs;
use crate::{
    error::{Error, exit_code},
    plan::{
        calling_convention::{ArgPlace, entry_places},
        registers,
    },
    symbols::{Detail, FunctionSpec, ProbeSite, Resolver, open_objects, site::ReturnProbes},
};

/// `koolkit-trace list`: the table (or JSON Lines) of what matches; exit 2 when nothing does.
pub(super) fn run(args: &ListArgs) -> anyhow::Result<i32> {
    let target = args.target.resolve()?.target;
    let specs = args.target.scoped(std::slice::from_ref(&args.pattern));
    let FunctionSpec::Symbol { object, pattern } = &specs[0] else {
        return Err(Error::Usage("list takes a name pattern, not FILE:LINE".into()).into());
    };
    let objects = open_objects(&target, &specs)?;
    let detail = if args.params {
        Detail::Parameters
    } else {
        Detail::Source
    };
    let sites = Resolver::new(&target, &objects)
        .with_returns(args.returns.choice())
        .list(object.as_deref(), pattern, detail)?;
    let text = if args.json {
        json_lines(&sites)
    } else {
        table(&sites)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|err| Error::write("standard output", err))?;
    if sites.is_empty() {
        super::say("", format_args!("no function matches `{}`", args.pattern));
        return Ok(exit_code::USAGE);
    }
    Ok(exit_code::OK)
}

/// Where a parameter is at the entry, as text: `rdi`, `rdi+rsi`, `[rsp+8]`, `*rcx`, `<xmm>`.
pub fn describe_place(place: &ArgPlace) -> String {
    match place {
        ArgPlace::Register(r) => registers::name(*r).into(),
        ArgPlace::RegisterPair(a, b) => format!("{}+{}", registers::name(*a), registers::name(*b)),
        ArgPlace::Stack(offset) => format!("[rsp+{offset}]"),
        ArgPlace::Indirect(r) => format!("*{}", registers::name(*r)),
        ArgPlace::Pieces(pieces) => pieces
            .iter()
            .map(|piece| match piece.register {
                Ok(r) if piece.size == 8 => registers::name(r).to_string(),
                Ok(r) => format!("{}[{}]", registers::name(r), piece.size),
                Err(reason) => format!("<{reason}>"),
            })
            .collect::<Vec<_>>()
            .join("+"),
        ArgPlace::Unavailable(reason) => format!("<{reason}>"),
    }
}

/// The parameters of `site` with their types and places, when DWARF described them, then a
/// Go function's results (placed `result`).
fn parameters(site: &ProbeSite) -> Option<Vec<(String, String, String)>> {
    let debug = site.debug.as_ref()?;
    let places = entry_places(debug);
    let go = debug.language == crate::symbols::dwarf::Language::Go;
    let type_name = |ty: &crate::symbols::types::Type| if go { ty.go_name() } else { ty.name() };
    let params = debug
        .params
        .iter()
        .zip(places)
        .map(|(p, place)| (p.name.clone(), type_name(&p.ty), describe_place(&place)));
    let results = debug
        .go_results
        .iter()
        .map(|r| (r.name.clone(), type_name(&r.ty), "result".to_string()));
    Some(params.chain(results).collect())
}

fn probe_column(site: &ProbeSite) -> String {
    let skip = site.probe_offset - site.file_offset;
    if skip == 0 {
        format!("{} ({})", site.cost, site.probe_instruction)
    } else {
        format!("{} ({} at +{skip})", site.cost, site.probe_instruction)
    }
}

/// How the returns are probed, and why: `uretprobe (a leaf: …)`, `3 ret sites (Go: …)`.
fn returns_column(site: &ProbeSite) -> String {
    let how = match &site.returns {
        ReturnProbes::Uretprobe => "uretprobe".to_string(),
        ReturnProbes::AtExits(exits) if exits.len() == 1 => "1 ret site".to_string(),
        ReturnProbes::AtExits(exits) => format!("{} ret sites", exits.len()),
    };
    if site.returns_why.is_empty() {
        how
    } else {
        format!("{how} ({})", site.returns_why)
    }
}

/// A table, one function per line, sorted by object then name.
pub fn table(sites: &[ProbeSite]) -> String {
    let mut sorted: Vec<&ProbeSite> = sites.iter().collect();
    sorted.sort_by(|a, b| {
        (a.object.file_name(), &a.function).cmp(&(b.object.file_name(), &b.function))
    });
    let width = |f: &dyn Fn(&ProbeSite) -> usize, min: usize, max: usize| {
        sorted
            .iter()
            .map(|s| f(s))
            .max()
            .unwrap_or(0)
            .clamp(min, max)
    };
    let name_width = width(&|s| s.function.len(), 8, 70);
    let object_width = width(&|s| s.object.file_name().len(), 6, 30);
    let probe_width = width(&|s| probe_column(s).chars().count(), 5, 40);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_width$}  {:<object_width$}  {:>12}  {:>7}  {:<32}  {:<probe_width$}  RETURNS",
        "FUNCTION", "OBJECT", "ADDRESS", "SIZE", "SOURCE", "PROBE"
    );
    for site in sorted {
        let source = site
            .source
            .as_ref()
            .map(|s| shorten(&s.to_string(), 32))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<name_width$}  {:<object_width$}  {:>12}  {:>7}  {:<32}  {:<probe_width$}  {}",
            site.function,
            site.object.file_name(),
            format!("{:#x}", site.address),
            site.size,
            source,
            probe_column(site),
            returns_column(site)
        );
        for (name, ty, place) in parameters(site).unwrap_or_default() {
            let _ = writeln!(out, "    {name}: {ty}  ({place})");
        }
    }
    out
}

/// Keeps the end of a long path, where the file name and line are.
fn shorten(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        text.to_string()
    } else {
        let tail: String = chars[chars.len() - (max - 1)..].iter().collect();
        format!("…{tail}")
    }
}

/// JSON Lines, one object per function.
pub fn json_lines(sites: &[ProbeSite]) -> String {
    let mut out = String::new();
    for site in sites {
        let params = parameters(site).map(|params| {
            params
                .into_iter()
                .map(|(name, ty, place)| json!({"name": name, "type": ty, "place": place}))
                .collect::<Vec<_>>()
        });
        let mut record = json!({
            "fn": site.function,
            "symbol": site.symbol,
            "object": site.object.path,
            "address": site.address,
            "size": site.size,
            "source": site.source.as_ref().map(|s| json!({"file": s.file, "line": s.line})),
            "probe": {
                "offset": site.probe_offset,
                "skip": site.probe_offset - site.file_offset,
                "cost": site.cost,
                "instruction": site.probe_instruction,
            },
            "returns": {
                "kind": site.returns.kind(),
                "sites": match &site.returns {
                    ReturnProbes::Uretprobe => 0,
                    ReturnProbes::AtExits(exits) => exits.len(),
                },
                "tail_calls": match &site.returns {
                    ReturnProbes::Uretprobe => 0,
                    ReturnProbes::AtExits(exits) => exits.iter().filter(|e| e.tail_call).count(),
                },
                "why": site.returns_why,
            },
        });
        if let Some(params) = params {
            record["params"] = json!(params);
        }
        out.push_str(&record.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::{SourceLocation, placement::CostClass, site::ProbeObject};

    fn site(name: &str, skip: u64) -> ProbeSite {
        ProbeSite {
            function: name.into(),
            symbol: name.into(),
            object: ProbeObject {
                path: "/usr/bin/shop".into(),
                open_path: "/usr/bin/shop".into(),
            },
            address: 0x1189,
            size: 21,
            file_offset: 0x1189,
            probe_offset: 0x1189 + skip,
            cost: if skip > 0 {
                CostClass::Emulated
            } else {
                CostClass::SingleStep
            },
            probe_instruction: if skip > 0 { "push" } else { "imul" }.into(),
            entry_sp_adjust: 0,
            source: Some(SourceLocation {
                file: "/home/dev/shop/src/very/deep/path/to/pricing.c".into(),
                line: 14,
            }),
            debug: None,
            build_id: None,
            returns: Default::default(),
            returns_why: "a leaf: nothing unwinds through it".into(),
            go: false,
            goroutine_id_offset: None,
            go_types: None,
        }
    }

    #[test]
    fn table_shows_source_and_probe_cost() {
        let text = table(&[site("price_order", 4), site("apply_discount", 0)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("FUNCTION"));
        assert!(lines[1].starts_with("apply_discount"), "sorted: {text}");
        assert!(lines[1].contains("single-step (imul)  "), "{text}");
        assert!(lines[2].contains("emulated (push at +4)"), "{text}");
        assert!(
            lines[2].ends_with("uretprobe (a leaf: nothing unwinds through it)"),
            "{text}"
        );
        assert!(lines[2].contains("…"), "long paths keep their end: {text}");
        assert!(lines[2].contains("pricing.c:14"), "{text}");
    }

    #[test]
    fn json_lines_parse() {
        let text = json_lines(&[site("price_order", 4)]);
        let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(value["fn"], "price_order");
        assert_eq!(value["source"]["line"], 14);
        assert_eq!(value["probe"]["cost"], "emulated");
        assert_eq!(value["probe"]["skip"], 4);
        assert_eq!(value["returns"]["kind"], "uretprobe");
    }
}
