//! The resolver: opens the objects a request may touch and turns `--fn` specs into probe
//! sites, by name (globs, demangled paths, aliases, overloads) or by source line, with what
//! DWARF says of each function and where its entry probe goes.

use std::{
    cell::OnceCell,
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use super::{
    demangle::{self, NamePattern},
    dwarf::{DebugInfo, FunctionDebug},
    elf::{FunctionKind, FunctionSymbol},
    exits::{Part, find_exits},
    glob::{closest_names, is_glob},
    go_runtime::goroutine_id_offset,
    object_files::ObjectFiles,
    placement::{
        CostClass, Emulation, EntryPlacement, place_entry_probe, place_entry_probe_moving_sp,
        place_go_probes,
    },
    site::{
        ExitProbe, ProbeObject, ProbeSite, ReturnChoice, ReturnProbes, SourceLocation, file_name,
    },
    spec::FunctionSpec,
};
use crate::{
    error::{Error, Result},
    target::{Target, deleted_copies, mapped_objects},
};

/// Function bodies larger than this are not decoded to check where the entry probe goes.
const MAX_DECODED_BODY: u64 = 1 << 20;

/// How much DWARF to read per site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Source position only (for `list`).
    Source,
    /// Parameters and types too (for tracing).
    Parameters,
}

/// Opens the objects a request may touch: for a process, every object it maps executable
/// (main executable first); for a binary, the binary and any object file a spec names by path.
pub fn open_objects(target: &Target, specs: &[FunctionSpec]) -> Result<Vec<ObjectFiles>> {
    target.check()?;
    let mut opened: Vec<ObjectFiles> = Vec::new();
    let push = |files: ObjectFiles, opened: &mut Vec<ObjectFiles>| {
        if !opened.iter().any(|o| o.identity == files.identity) {
            opened.push(files);
        }
    };
    match target {
        Target::Process { pid } => open_mapped(*pid, true, &mut |files| push(files, &mut opened))?,
        Target::Processes { pids } => {
            for (index, &pid) in pids.iter().enumerate() {
                // Processes of a group may exit meanwhile; only the lead must be there.
                match open_mapped(pid, index == 0, &mut |files| push(files, &mut opened)) {
                    Ok(()) => {}
                    Err(err) if index > 0 => log::info!("skipping process {pid}: {err}"),
                    Err(err) => return Err(err),
                }
            }
            // Programs before libraries: a function of any of them wins over a library's.
            opened.sort_by_key(|files| !files.is_program);
        }
        Target::Binary { path } => {
            let root = Path::new("/");
            let own = ProbeObject {
                path: path.display().to_string(),
                open_path: path.clone(),
            };
            push(ObjectFiles::open(own, root)?, &mut opened);
            // Processes still running a copy the file replaced need probes on that copy.
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            for (pid, copy) in deleted_copies(&canonical) {
                let object = ProbeObject {
                    path: copy.path.clone(),
                    open_path: copy.open_path.clone(),
                };
                match ObjectFiles::open(object, root) {
                    Ok(files) => {
                        log::info!("process {pid} runs a replaced copy: {}", copy.path);
                        push(files, &mut opened);
                    }
                    Err(err) => log::warn!("skipping the copy process {pid} runs: {err}"),
                }
            }
            for spec in specs {
                if let FunctionSpec::Symbol {
                    object: Some(wanted),
                    ..
                } = spec
                    && wanted.contains('/')
                {
                    let other = ProbeObject {
                        path: wanted.clone(),
                        open_path: PathBuf::from(wanted),
                    };
                    push(ObjectFiles::open(other, root)?, &mut opened);
                }
            }
        }
    }
    Ok(opened)
}

/// Opens every object process `pid` maps executable and hands each to `push`. The main
/// executable must be readable when `main_required`; a library that is not should not hide
/// the others.
fn open_mapped(pid: u32, main_required: bool, push: &mut dyn FnMut(ObjectFiles)) -> Result<()> {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    for mapped in mapped_objects(pid)? {
        let object = ProbeObject {
            path: mapped.path.clone(),
            open_path: mapped.open_path.clone(),
        };
        match ObjectFiles::open(object, &root) {
            Ok(mut files) => {
                files.is_program = mapped.is_main;
                // Uprobes go on the layer's file: two containers of an image share it.
                if let Some(backing) = mapped.backing {
                    files.identity = backing;
                }
                push(files);
            }
            Err(err) if !(mapped.is_main && main_required) => {
                log::warn!("skipping {}: {err}", mapped.path);
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Whether `wanted` names the object at `path`: the same path, the same file name, or the
/// file name's stem before `.so` (`libc` for `libc.so.6`).
fn object_matches(wanted: &str, path: &str) -> bool {
    let name = file_name(path);
    wanted == path
        || wanted == name
        || name
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with(".so") || rest.starts_with('-'))
}

/// Resolves specs against a set of opened objects.
pub struct Resolver<'a> {
    target: &'a Target,
    objects: &'a [ObjectFiles],
    dwarf: Vec<OnceCell<Option<DebugInfo<'a>>>>,
    emulation: Emulation,
    returns: ReturnChoice,
}

impl<'a> Resolver<'a> {
    pub fn new(target: &'a Target, objects: &'a [ObjectFiles]) -> Self {
        Self {
            target,
            objects,
            dwarf: objects.iter().map(|_| OnceCell::new()).collect(),
            emulation: Emulation::of_running_kernel(),
            returns: ReturnChoice::Auto,
        }
    }

    /// Probes returns as `returns` says (`--returns`).
    pub fn with_returns(mut self, returns: ReturnChoice) -> Self {
        self.returns = returns;
        self
    }

    fn dwarf(&self, index: usize) -> Option<&DebugInfo<'a>> {
        self.dwarf[index]
            .get_or_init(|| {
                let file = self.objects[index].dwarf_file()?;
                match DebugInfo::load(file) {
                    Ok(info) => info,
                    Err(err) => {
                        log::warn!("{}: {err}", self.objects[index].object.path);
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Indexes of the objects `object` selects, in search order.
    fn candidates(&self, object: Option<&str>) -> Result<Vec<usize>> {
        let all = 0..self.objects.len();
        let Some(wanted) = object else {
            return Ok(all.collect());
        };
        let matching: Vec<usize> = all
            .filter(|&i| object_matches(wanted, &self.objects[i].object.path))
            .collect();
        if !matching.is_empty() {
            return Ok(matching);
        }
        match self.target {
            Target::Process { pid } => Err(self.unknown_object(*pid, wanted)),
            Target::Processes { pids } => {
                Err(self.unknown_object(pids.first().copied().unwrap_or(0), wanted))
            }
            Target::Binary { path } => Err(Error::Usage(format!(
                "`{wanted}` is not {}; with --binary, OBJECT must name that binary or be the \
                 path of another object file",
                path.display()
            ))),
        }
    }

    fn unknown_object(&self, pid: u32, wanted: &str) -> Error {
        Error::UnknownObject {
            pid,
            object: wanted.to_string(),
            candidates: self
                .objects
                .iter()
                .map(|o| o.object.file_name().to_string())
                .collect(),
        }
    }

    /// Turns the `--fn` specs into probe sites, each with its parameters from DWARF.
    pub fn resolve(&self, specs: &[FunctionSpec]) -> Result<Vec<ProbeSite>> {
        let mut sites: Vec<ProbeSite> = Vec::new();
        let mut seen: HashSet<((u64, u64), u64)> = HashSet::new();
        for spec in specs {
            let found = match spec {
                FunctionSpec::Symbol { object, pattern } => {
                    let candidates = self.candidates(object.as_deref())?;
                    // Without OBJECT, the programs that define a match win (the main
                    // executables of the target's processes), else the first library.
                    self.by_name(pattern, &candidates, object.is_none(), Detail::Parameters)?
                }
                FunctionSpec::Line { file, line } => self.by_line(file, *line)?,
            };
            for (index, site) in found {
                if seen.insert((self.objects[index].identity, site.probe_offset)) {
                    sites.push(site);
                }
            }
        }
        disambiguate_overloads(&mut sites);
        Ok(sites)
    }

    /// Every function matching `pattern` in every object (the `list` command).
    pub fn list(
        &self,
        object: Option<&str>,
        pattern: &str,
        detail: Detail,
    ) -> Result<Vec<ProbeSite>> {
        let candidates = self.candidates(object)?;
        let found = match self.by_name(pattern, &candidates, false, detail) {
            Ok(found) => found,
            Err(Error::UnknownFunction { .. }) => Vec::new(),
            Err(err) => return Err(err),
        };
        let mut sites: Vec<ProbeSite> = found.into_iter().map(|(_, site)| site).collect();
        disambiguate_overloads(&mut sites);
        Ok(sites)
    }

    fn by_name(
        &self,
        pattern: &str,
        candidates: &[usize],
        first_hit_only: bool,
        detail: Detail,
    ) -> Result<Vec<(usize, ProbeSite)>> {
        let matcher = NamePattern::new(pattern);
        let mut sites = Vec::new();
        let mut ifuncs = Vec::new();
        let mut hit = false;
        for &index in candidates {
            let files = &self.objects[index];
            // After the first hit only the copies of that object a replaced file left running,
            // and the programs of other processes of the target (they come first).
            if hit && first_hit_only && !files.object.is_replaced_copy() && !files.is_program {
                continue;
            }
            let functions = files.functions()?;
            // file offset → (symbol, shown name); BTreeMap keeps sites in address order.
            let mut by_offset: BTreeMap<u64, (&FunctionSymbol, String)> = BTreeMap::new();
            for function in functions {
                // GCC's `.cold` parts are jumped to, never called: no entry, no return address.
                if is_cold_part(&function.name) {
                    continue;
                }
                let Some(shown) = matcher.matches(&function.name) else {
                    continue;
                };
                if function.kind == FunctionKind::Ifunc {
                    ifuncs.push(format!("{shown} in {}", files.object.file_name()));
                    continue;
                }
                let Some(offset) = files.elf().file_offset(function.address)? else {
                    log::warn!(
                        "{}: {shown} at {:#x} is outside every executable segment; skipped",
                        files.object.path,
                        function.address
                    );
                    continue;
                };
                by_offset
                    .entry(offset)
                    .and_modify(|chosen| {
                        if preferred_alias(pattern, &shown, &chosen.1) {
                            *chosen = (function, shown.clone());
                        }
                    })
                    .or_insert((function, shown));
            }
            hit |= !by_offset.is_empty();
            for (file_offset, (function, shown)) in by_offset {
                sites.push((
                    index,
                    self.site(index, function, shown, file_offset, detail)?,
                ));
            }
        }
        if !sites.is_empty() {
            return Ok(sites);
        }
        Err(self.explain_no_match(pattern, candidates, &ifuncs))
    }

    fn explain_no_match(&self, pattern: &str, candidates: &[usize], ifuncs: &[String]) -> Error {
        if !ifuncs.is_empty() {
            return Error::Usage(format!(
                "`{pattern}` is only an IFUNC resolver ({}); the implementation is picked at \
                 load time: trace the implementation instead (`koolkit-trace list` shows the \
                 variants)",
                ifuncs.join(", ")
            ));
        }
        if !is_glob(pattern) {
            for &index in candidates {
                if self.dwarf(index).is_some_and(|d| d.inlined_only(pattern)) {
                    return Error::Usage(format!(
                        "`{pattern}` exists in {} only inlined into its callers: it has no \
                         entry of its own to probe; trace a function that calls it",
                        self.objects[index].object.path
                    ));
                }
            }
        }
        let searched = match candidates {
            [one] => self.objects[*one].object.path.clone(),
            many => format!("{} objects ({})", many.len(), self.describe(many)),
        };
        let names: Vec<String> = candidates
            .iter()
            .filter_map(|&i| self.objects[i].functions().ok())
            .flatten()
            .map(|f| demangle::demangle(&f.name).map_or_else(|| f.name.clone(), |d| d.path))
            .collect();
        Error::UnknownFunction {
            pattern: pattern.to_string(),
            searched,
            suggestions: closest_names(pattern, names.iter().map(String::as_str), 5),
            // The first object searched is the one meant (the main executable, or the one
            // OBJECT named); a stripped system library behind it is no news.
            notes: candidates
                .first()
                .and_then(|&i| self.objects[i].stripped_note())
                .into_iter()
                .collect(),
        }
    }

    fn describe(&self, indexes: &[usize]) -> String {
        const SHOWN: usize = 4;
        let mut names: Vec<&str> = indexes
            .iter()
            .take(SHOWN)
            .map(|&i| self.objects[i].object.file_name())
            .collect();
        if indexes.len() > SHOWN {
            names.push("...");
        }
        names.join(", ")
    }

    fn by_line(&self, file: &str, line: u32) -> Result<Vec<(usize, ProbeSite)>> {
        let mut sites = Vec::new();
        let mut files_seen = Vec::new();
        let mut nearby = Vec::new();
        let mut any_dwarf = false;
        for index in 0..self.objects.len() {
            let Some(dwarf) = self.dwarf(index) else {
                continue;
            };
            any_dwarf = true;
            let matches = dwarf.line_addresses(file, u64::from(line))?;
            files_seen.extend(matches.files);
            nearby.extend(matches.nearby);
            let functions = self.objects[index].functions()?;
            for function in functions_holding(functions, &matches.addresses) {
                let shown = demangle::demangle(&function.name)
                    .map_or_else(|| function.name.clone(), |d| d.path);
                let Some(offset) = self.objects[index].elf().file_offset(function.address)? else {
                    continue;
                };
                sites.push((
                    index,
                    self.site(index, function, shown, offset, Detail::Parameters)?,
                ));
            }
        }
        if !sites.is_empty() {
            return Ok(sites);
        }
        Err(no_code_at_line(file, line, any_dwarf, files_seen, nearby))
    }

    /// How the returns of `function` (not Go; its `code`, all of it when `whole_body`) are
    /// probed, and why: on its ways out wherever an exception or panic may unwind through it
    /// (a uretprobe's trampoline address stops the unwinder and the program aborts), else by
    /// the cheaper uretprobe.
    fn return_probes(
        &self,
        files: &ObjectFiles,
        function: &FunctionSymbol,
        code: &[u8],
        whole_body: bool,
    ) -> Result<(ReturnProbes, String)> {
        if self.returns == ReturnChoice::Uretprobe {
            return Ok((ReturnProbes::Uretprobe, "--returns uretprobe".into()));
        }
        let cold = files.cold_part(&function.name).and_then(|cold| {
            let offset = files.elf().file_offset(cold.address).ok()??;
            let size = usize::try_from(cold.size)
                .ok()
                .filter(|&s| s > 0 && s as u64 <= MAX_DECODED_BODY)?;
            Some(Part {
                code: files.elf().bytes_at(offset, size),
                address: cold.address,
            })
        });
        let body = Part {
            code,
            address: function.address,
        };
        let parts: Vec<Part<'_>> = std::iter::once(body).chain(cold).collect();
        let Some(exits) = whole_body.then(|| find_exits(&parts)).flatten() else {
            return Ok((
                ReturnProbes::Uretprobe,
                "its body does not decode whole, so its ways out are not known".into(),
            ));
        };
        let why = match self.returns {
            ReturnChoice::RetSites => "--returns ret-sites",
            _ if !exits.calls && !exits.tail_calls => {
                return Ok((
                    ReturnProbes::Uretprobe,
                    "a leaf: nothing unwinds through it".into(),
                ));
            }
            _ => match files.unwinding() {
                Some(why) => why,
                None => {
                    return Ok((
                        ReturnProbes::Uretprobe,
                        "no exception or panic unwinds through its object".into(),
                    ));
                }
            },
        };
        let mut probes = Vec::with_capacity(exits.exits.len());
        for exit in &exits.exits {
            let Some(offset) = files.elf().file_offset(exit.address)? else {
                continue;
            };
            probes.push(ExitProbe {
                offset,
                condition: exit.condition,
                tail_call: exit.tail_call,
            });
        }
        Ok((ReturnProbes::AtExits(probes), why.to_string()))
    }

    /// Builds the site of `function` (at `file_offset` of object `index`).
    fn site(
        &self,
        index: usize,
        function: &FunctionSymbol,
        shown: String,
        file_offset: u64,
        detail: Detail,
    ) -> Result<ProbeSite> {
        let files = &self.objects[index];
        // Bodies without a size, or absurdly large ones, are not decoded whole.
        let whole_body = function.size > 0 && function.size <= MAX_DECODED_BODY;
        let length = if whole_body {
            function.size as usize
        } else {
            16
        };
        let code = files.elf().bytes_at(file_offset, length);
        // In a Go program, Go functions are `pkg.Name`; C linked in with cgo has no dot and
        // is traced as C.
        let go_function = files.go.is_some() && function.name.contains('.');
        let (placement, returns, returns_why) = if go_function {
            let why = "Go: the runtime moves stacks, so never a uretprobe".to_string();
            match place_go_probes(code, function.address, self.emulation) {
                Ok(go) => (
                    go.entry,
                    ReturnProbes::AtExits(
                        go.returns
                            .iter()
                            .map(|r| ExitProbe {
                                offset: file_offset + r,
                                condition: 0,
                                tail_call: false,
                            })
                            .collect(),
                    ),
                    why,
                ),
                Err(reason) => (
                    EntryPlacement {
                        skip: 0,
                        cost: CostClass::Refused,
                        instruction: reason.to_string(),
                        sp_adjust: 0,
                    },
                    ReturnProbes::AtExits(Vec::new()),
                    why,
                ),
            }
        } else {
            let (returns, why) = self.return_probes(files, function, code, whole_body)?;
            // A uretprobe takes the return address from the top of the stack at its probe;
            // probes on the ways out key on the return address's slot, wherever the entry is.
            let placement = match returns {
                ReturnProbes::AtExits(_) => {
                    place_entry_probe_moving_sp(code, function.address, whole_body, self.emulation)
                }
                ReturnProbes::Uretprobe => {
                    place_entry_probe(code, function.address, whole_body, self.emulation)
                }
            };
            (placement, returns, why)
        };
        let probe_offset =
            file_offset
                .checked_add(placement.skip)
                .ok_or_else(|| Error::BadElf {
                    path: files.object.open_path.clone(),
                    reason: format!("function {shown} overflows the file"),
                })?;
        let described = match self.dwarf(index) {
            Some(dwarf) => describe(dwarf, function.address, &shown, detail),
            None => Described::default(),
        };
        let mut debug = described.debug;
        // GCC's interprocedural clones may drop or reorder parameters without saying so in
        // DWARF: only DWARF's own locations can be trusted there.
        if is_ipa_clone(&function.name)
            && let Some(debug) = &mut debug
        {
            debug.standard_convention = false;
        }
        Ok(ProbeSite {
            function: instance_name(shown, described.name.as_deref()),
            symbol: function.name.clone(),
            object: files.object.clone(),
            address: function.address,
            size: function.size,
            file_offset,
            probe_offset,
            cost: placement.cost,
            probe_instruction: placement.instruction,
            entry_sp_adjust: placement.sp_adjust,
            source: described
                .source
                .or_else(|| files.go_source(function.address)),
            debug,
            build_id: files.elf().build_id_hex(),
            returns,
            returns_why,
            go: go_function,
            goroutine_id_offset: go_function
                .then(|| files.go.as_deref().and_then(goroutine_id_offset))
                .flatten(),
            go_types: go_function.then_some(files.go_types).flatten(),
        })
    }
}

/// The functions holding `addresses`, each once, in address order: for each address the
/// smallest function containing it, and for a `.cold` part the function it was split from.
fn functions_holding<'f>(
    functions: &'f [FunctionSymbol],
    addresses: &[u64],
) -> Vec<&'f FunctionSymbol> {
    let mut chosen: BTreeMap<u64, &FunctionSymbol> = BTreeMap::new();
    for &address in addresses {
        let Some(mut function) = functions
            .iter()
            .filter(|f| {
                f.kind == FunctionKind::Function
                    && f.address <= address
                    && address < f.address + f.size.max(1)
            })
            .min_by_key(|f| f.size)
        else {
            continue;
        };
        if is_cold_part(&function.name) {
            let parent = function.name.split(".cold").next().unwrap_or_default();
            match functions.iter().find(|f| f.name == parent) {
                Some(parent) => function = parent,
                None => continue,
            }
        }
        chosen.insert(function.address, function);
    }
    chosen.into_values().collect()
}

/// Why `FILE:LINE` found no code: no line tables at all, no such file, or no code on that
/// line (with the nearest lines that have some).
fn no_code_at_line(
    file: &str,
    line: u32,
    any_dwarf: bool,
    mut files_seen: Vec<String>,
    mut nearby: Vec<u64>,
) -> Error {
    if !any_dwarf {
        return Error::Usage(format!(
            "--fn {file}:{line}: no DWARF line tables in the target (build with -g, or \
             install its debug package)"
        ));
    }
    files_seen.sort();
    files_seen.dedup();
    nearby.sort_unstable_by_key(|l: &u64| l.abs_diff(u64::from(line)));
    nearby.dedup();
    nearby.truncate(5);
    Error::Usage(if files_seen.is_empty() {
        format!("--fn {file}:{line}: no source file ending in `{file}` in the line tables")
    } else {
        format!(
            "--fn {file}:{line}: no code at that line of {}; lines with code nearby: {}",
            files_seen.join(", "),
            nearby
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// What DWARF says of one function, as much as a [`Detail`] asks.
#[derive(Default)]
struct Described {
    /// DWARF's own name for it (generic instances spelled out).
    name: Option<String>,
    source: Option<SourceLocation>,
    debug: Option<FunctionDebug>,
}

/// Reads what `detail` asks of the function at `address` from `dwarf`. DWARF faults are
/// logged and leave the site without that detail, never fail the trace.
fn describe(dwarf: &DebugInfo<'_>, address: u64, shown: &str, detail: Detail) -> Described {
    match detail {
        Detail::Source => {
            let summary = dwarf.function_summary(address).unwrap_or_else(|err| {
                log::debug!("{shown}: {err}");
                None
            });
            let name = summary.as_ref().and_then(|s| s.name.clone());
            let source = summary.and_then(|s| {
                Some(SourceLocation {
                    file: s.file?,
                    line: s.line?,
                })
            });
            Described {
                name,
                source,
                debug: None,
            }
        }
        Detail::Parameters => {
            let debug = dwarf.function_at(address).unwrap_or_else(|err| {
                log::warn!("{shown}: {err}");
                None
            });
            Described {
                name: debug.as_ref().map(|d| d.name.clone()),
                source: debug.as_ref().and_then(|d| {
                    Some(SourceLocation {
                        file: d.file.clone()?,
                        line: d.line?,
                    })
                }),
                debug,
            }
        }
    }
}

/// The name a site is shown by: Rust's legacy mangling drops generic arguments, and DWARF
/// names the instance (`orders::total` becomes `orders::total<u32>`).
fn instance_name(shown: String, dwarf_name: Option<&str>) -> String {
    match dwarf_name {
        Some(name) if name.contains('<') => {
            let base = name.split('<').next().unwrap_or(name);
            match shown.strip_suffix(base) {
                Some(prefix) if !base.is_empty() => format!("{prefix}{name}"),
                _ => shown,
            }
        }
        _ => shown,
    }
}

/// Whether `name` is a `.cold` part GCC split off a function.
fn is_cold_part(name: &str) -> bool {
    name.contains(".cold")
}

/// Whether `name` is a GCC interprocedural clone (`foo.isra.0`, `foo.constprop.1`,
/// `foo.part.2`), whose calling convention may differ from its declaration.
fn is_ipa_clone(name: &str) -> bool {
    [".isra", ".constprop", ".part."]
        .iter()
        .any(|marker| name.contains(marker))
}

/// Of two names for one address, whether `candidate` is a better one to show than `chosen`:
/// the exact name asked for, else a public-looking name, else the shorter.
fn preferred_alias(pattern: &str, candidate: &str, chosen: &str) -> bool {
    let rank = |name: &str| (name != pattern, name.starts_with('_'), name.len());
    rank(candidate) < rank(chosen)
}

/// C++ overloads share a name; where two sites would show the same one, show each with its
/// parameter types (from the mangled name) instead.
fn disambiguate_overloads(sites: &mut [ProbeSite]) {
    let mut counts = std::collections::HashMap::new();
    // A replaced copy still running holds the same functions as the file: not overloads.
    for site in sites.iter().filter(|s| !s.object.is_replaced_copy()) {
        *counts.entry(site.function.clone()).or_insert(0) += 1;
    }
    for site in sites.iter_mut() {
        if counts.get(&site.function).is_none_or(|n| *n < 2) {
            continue;
        }
        if let Some(demangled) = demangle::demangle(&site.symbol)
            && demangled.signature != demangled.path
        {
            site.function = demangled.signature;
        } else if let Some(params) = site.debug.as_ref().map(|d| {
            d.params
                .iter()
                .filter(|p| !p.artificial)
                .map(|p| p.ty.name())
                .collect::<Vec<_>>()
                .join(", ")
        }) {
            site.function = format!("{}({params})", site.function);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::resolve;

    #[test]
    fn objects_match_by_path_name_or_stem() {
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        assert!(object_matches(libc, libc));
        assert!(object_matches("libc.so.6", libc));
        assert!(object_matches("libc", libc));
        assert!(!object_matches("lib", libc));
        assert!(!object_matches("libc.so.7", libc));
        assert!(object_matches(
            "libpython3.11",
            "/usr/lib/libpython3.11.so.1.0"
        ));
    }

    #[test]
    fn prefers_the_exact_then_public_name_for_aliases() {
        assert!(preferred_alias("__libc_malloc", "__libc_malloc", "malloc"));
        assert!(preferred_alias("*malloc", "malloc", "__libc_malloc"));
        assert!(!preferred_alias("*malloc", "__libc_malloc", "malloc"));
    }

    #[test]
    fn resolves_in_own_process_and_suggests_on_typo() {
        let target = Target::Process {
            pid: std::process::id(),
        };
        let sites = resolve(
            &target,
            &["libc.so.6:malloc".parse().unwrap()],
            ReturnChoice::Auto,
        )
        .unwrap();
        assert_eq!(sites.len(), 1, "{sites:?}");
        assert_eq!(sites[0].function, "malloc");
        assert_eq!(sites[0].object.file_name(), "libc.so.6");

        let err = resolve(
            &target,
            &["libc.so.6:mallok".parse().unwrap()],
            ReturnChoice::Auto,
        )
        .unwrap_err();
        let Error::UnknownFunction { suggestions, .. } = &err else {
            panic!("{err}")
        };
        assert!(suggestions.iter().any(|s| s == "malloc"), "{suggestions:?}");

        let err = resolve(
            &target,
            &["libnothere.so:f".parse().unwrap()],
            ReturnChoice::Auto,
        )
        .unwrap_err();
        assert!(matches!(err, Error::UnknownObject { .. }), "{err}");
    }

    #[test]
    fn resolves_rust_functions_by_demangled_path_with_parameters() {
        let target = Target::Binary {
            path: std::env::current_exe().unwrap(),
        };
        let sites = resolve(
            &target,
            &["tracer::symbols::dwarf::lines::path_ends_with"
                .parse()
                .unwrap()],
            ReturnChoice::Auto,
        )
        .unwrap();
        assert_eq!(sites.len(), 1);
        let site = &sites[0];
        assert_eq!(
            site.function,
            "tracer::symbols::dwarf::lines::path_ends_with"
        );
        assert!(
            site.source
                .as_ref()
                .unwrap()
                .file
                .ends_with("dwarf/lines.rs")
        );
        let params: Vec<&str> = site
            .debug
            .as_ref()
            .unwrap()
            .params
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(params, ["path", "suffix"]);

        let listed = Resolver::new(&target, &open_objects(&target, &[]).unwrap())
            .list(None, "tracer::symbols::glob::*", Detail::Source)
            .unwrap();
        assert!(
            listed
                .iter()
                .any(|s| s.function == "tracer::symbols::glob::glob_match"),
            "{listed:?}"
        );
        assert!(
            listed
                .iter()
                .all(|s| s.function.starts_with("tracer::symbols::glob::"))
        );
        assert!(listed.iter().all(|s| s.debug.is_none()));
    }
}
