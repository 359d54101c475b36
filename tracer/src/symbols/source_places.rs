//! Where in the source an address of a stack is, from its object's DWARF: the file and line,
//! and the functions the compiler inlined there, innermost first (what `addr2line -i` prints).
//! An optimised build inlines most small functions, so without these a stack skips the very
//! frames a developer wrote.
//!
//! The DWARF sections are copied out of the file once per object (the symbolizer keeps its
//! objects for the whole trace, and the reader must own what it reads); units are parsed
//! lazily, on the first address that falls in them.

use std::{borrow::Cow, rc::Rc};

use gimli::{EndianRcSlice, RunTimeEndian};

use super::{demangle::demangle, elf::ElfFile, site::SourceLocation};

type Reader = EndianRcSlice<RunTimeEndian>;

/// A function inlined at an address, and where in it the address is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlinedCall {
    pub function: String,
    pub place: Option<SourceLocation>,
}

/// What DWARF says of one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places {
    /// The functions inlined at the address, innermost first.
    pub inlined: Vec<InlinedCall>,
    /// Where in the function holding the address (the symbol's) the address is: the line of
    /// the outermost inlined call, or of the address itself.
    pub place: Option<SourceLocation>,
}

/// The DWARF of one object, for looking up addresses.
pub struct SourcePlaces {
    context: addr2line::Context<Reader>,
}

impl SourcePlaces {
    /// The source places of `elf`, from its DWARF; `None` when it has none (or DWARF this
    /// reader cannot take, which leaves the stack with symbol names only).
    pub fn load(elf: &ElfFile) -> Option<Self> {
        if !elf.has_dwarf() {
            return None;
        }
        let dwarf = gimli::Dwarf::load(|id| -> Result<Reader, gimli::Error> {
            let data = elf.section(id.name()).ok().flatten().unwrap_or(&[]);
            Ok(EndianRcSlice::new(Rc::from(data), RunTimeEndian::Little))
        })
        .ok()?;
        match addr2line::Context::from_dwarf(dwarf) {
            Ok(context) => Some(Self { context }),
            Err(err) => {
                log::debug!("{}: DWARF not read for stacks: {err}", elf.path().display());
                None
            }
        }
    }

    /// The places of file address `address`; nothing known gives empty places.
    pub fn at(&self, address: u64) -> Places {
        let Ok(mut frames) = self.context.find_frames(address).skip_all_loads() else {
            return Places::default();
        };
        let mut found: Vec<(Option<String>, Option<SourceLocation>)> = Vec::new();
        while let Ok(Some(frame)) = frames.next() {
            let function = frame
                .function
                .as_ref()
                .and_then(|f| f.raw_name().ok())
                .map(shown_name);
            let place = frame.location.and_then(|location| {
                Some(SourceLocation {
                    file: location.file?.to_string(),
                    line: u64::from(location.line?),
                })
            });
            found.push((function, place));
        }
        // The last frame is the function the symbol table names too: only its line is new.
        let place = found.pop().and_then(|(_, place)| place);
        Places {
            inlined: found
                .into_iter()
                .map(|(function, place)| InlinedCall {
                    function: function.unwrap_or_else(|| "??".to_string()),
                    place,
                })
                .collect(),
            place,
        }
    }
}

/// A DWARF name as the symbol table's are shown: linkage names demangled.
fn shown_name(name: Cow<'_, str>) -> String {
    demangle(&name).map_or_else(|| name.into_owned(), |d| d.path)
}

/// `session/mod.rs:12`: a source place with its file's last two path components, enough to
/// tell `mod.rs` files apart without the build machine's directories.
pub fn short_place(place: &SourceLocation) -> String {
    let mut parts = place.file.rsplit('/').filter(|p| !p.is_empty());
    let file = match (parts.next(), parts.next()) {
        (Some(name), Some(dir)) => format!("{dir}/{name}"),
        (Some(name), None) => name.to_string(),
        _ => place.file.clone(),
    };
    format!("{file}:{}", place.line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_keep_the_last_two_path_components() {
        let place = |file: &str| SourceLocation {
            file: file.to_string(),
            line: 12,
        };
        assert_eq!(
            short_place(&place("/home/ci/src/session/mod.rs")),
            "session/mod.rs:12"
        );
        assert_eq!(short_place(&place("requests.c")), "requests.c:12");
        assert_eq!(short_place(&place("/requests.c")), "requests.c:12");
    }

    #[test]
    fn the_tracer_s_own_code_has_a_line() {
        // The test binary is built with DWARF: this function's own address has a place.
        let elf = ElfFile::open(std::env::current_exe().unwrap()).unwrap();
        let places = SourcePlaces::load(&elf).expect("the test binary has DWARF");
        let address = the_tracer_s_own_code_has_a_line as *const () as u64;
        // The running address is the mapped one; the file's address is found through the
        // mapping's offset, as the symbolizer does.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let file_address = maps
            .lines()
            .filter_map(crate::target::parse_maps_line)
            .find(|m| m.start <= address && address < m.end)
            .and_then(|m| {
                let line = maps
                    .lines()
                    .find(|l| l.starts_with(&format!("{:x}-", m.start)))?;
                let offset = u64::from_str_radix(line.split(' ').nth(2)?, 16).ok()?;
                elf.address_of_offset(address - m.start + offset)
            })
            .expect("mapped");
        let place = places.at(file_address).place.expect("a line");
        assert!(place.file.ends_with("source_places.rs"), "{place:?}");
        assert!(place.line > 100, "{place:?}");
    }
}
