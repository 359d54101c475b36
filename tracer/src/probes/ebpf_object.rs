//! The eBPF object embedded in the binary, and a second, relocated copy of its programs for
//! uprobe-multi links.
//!
//! aya loads the object and creates its maps. For uprobe-multi, the same bytes are parsed again
//! with aya-obj and relocated against aya's map fds, so both copies of the programs share the
//! maps (DESIGN.md, "Attaching").

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
};

use aya::{Ebpf, maps::Map};
use aya_obj::generated::bpf_insn;

use crate::error::{Error, Result};

/// The eBPF object built by `build.rs` from the `tracer-ebpf` crate.
#[cfg(not(ebpf_object_missing))]
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

/// Built with `AYA_BUILD_SKIP=1`: no object was embedded.
#[cfg(ebpf_object_missing)]
pub static EBPF_OBJECT: &[u8] = &[];

/// The object's bytes, or an error saying this build has none.
pub fn ebpf_object() -> Result<&'static [u8]> {
    if EBPF_OBJECT.is_empty() {
        return Err(Error::internal(
            "this koolkit-trace was built with AYA_BUILD_SKIP=1 and embeds no eBPF programs; \
             rebuild it without that variable",
        ));
    }
    Ok(EBPF_OBJECT)
}

/// A duplicate of the fd of each map aya created, by name, taken before any map is moved out
/// of `ebpf`. Owned duplicates stay valid whatever becomes of aya's maps later.
pub fn map_fds(ebpf: &Ebpf) -> std::io::Result<HashMap<String, OwnedFd>> {
    ebpf.maps()
        .filter_map(|(name, map)| {
            let data = match map {
                Map::Array(data)
                | Map::HashMap(data)
                | Map::LruHashMap(data)
                | Map::PerCpuArray(data)
                | Map::PerCpuHashMap(data)
                | Map::PerCpuLruHashMap(data)
                | Map::RingBuf(data)
                | Map::StackTraceMap(data)
                | Map::Unsupported(data) => data,
                _ => return None,
            };
            Some(
                data.fd()
                    .as_fd()
                    .try_clone_to_owned()
                    .map(|fd| (name.to_string(), fd)),
            )
        })
        .collect()
}

/// A program ready for a raw `BPF_PROG_LOAD`.
pub struct LinkedProgram {
    pub instructions: Vec<bpf_insn>,
    pub license: std::ffi::CString,
    pub kernel_version: u32,
}

/// Parses `bytes` again and links `programs` against the maps whose fds are in `map_fds`.
pub fn link_programs(
    bytes: &[u8],
    map_fds: &HashMap<String, OwnedFd>,
    programs: &[&str],
) -> Result<HashMap<String, LinkedProgram>> {
    let relocation = |source| Error::bpf("relocating the eBPF object for uprobe-multi", source);
    let mut object = aya_obj::Object::parse(bytes)
        .map_err(|source| Error::bpf("parsing the embedded eBPF object", source))?;
    let maps: Vec<(String, aya_obj::Map)> = object.maps.drain().collect();
    let mut with_fds = Vec::with_capacity(maps.len());
    for (name, map) in &maps {
        let fd = map_fds.get(name).ok_or_else(|| {
            Error::internal(format!("the eBPF object's map {name} was not created"))
        })?;
        with_fds.push((name.as_str(), fd.as_raw_fd(), map));
    }
    let text_sections: HashSet<usize> = object
        .functions
        .keys()
        .map(|(section, _)| *section)
        .collect();
    object
        .relocate_maps(with_fds.into_iter(), &text_sections)
        .map_err(relocation)?;
    object.relocate_calls(&text_sections).map_err(relocation)?;
    object.sanitize_functions(aya::features());

    let kernel_version = aya::util::KernelVersion::current().map_or(0, |v| v.code());
    let mut linked = HashMap::new();
    for &name in programs {
        let program = object.programs.get(name).ok_or_else(|| {
            Error::internal(format!("the embedded eBPF object has no program {name}"))
        })?;
        let function = object
            .functions
            .get(&program.function_key())
            .ok_or_else(|| {
                Error::internal(format!("the embedded eBPF object has no code for {name}"))
            })?;
        linked.insert(
            name.to_string(),
            LinkedProgram {
                instructions: function.instructions.clone(),
                license: program.license.clone(),
                kernel_version: program.kernel_version.unwrap_or(kernel_version),
            },
        );
    }
    Ok(linked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_ebpf::maps;

    #[test]
    fn embedded_object_has_every_program_and_map_user_space_names() {
        let object = aya_obj::Object::parse(ebpf_object().unwrap()).unwrap();
        for program in [
            tracer_ebpf::ENTRY_PROGRAM,
            tracer_ebpf::RETURN_PROGRAM,
            tracer_ebpf::RET_SITE_PROGRAM,
            tracer_ebpf::FORK_PROGRAM,
            tracer_ebpf::EXIT_PROGRAM,
        ] {
            assert!(object.programs.contains_key(program), "program {program}");
        }
        for map in [
            maps::EVENTS,
            maps::PLANS,
            maps::INFLIGHT,
            maps::COUNTERS,
            maps::CONFIG,
            maps::TGIDS,
            maps::THREADS,
        ] {
            assert!(object.maps.contains_key(map), "map {map}");
        }
    }
}
