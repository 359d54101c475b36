//! Reading an ELF file: its function symbols (`.symtab`, then `.dynsym`) and the mapping from
//! virtual addresses to the file offsets uprobes are attached at.
//!
//! The file is memory-mapped and parsed on demand; nothing is copied but the symbols asked
//! for. Malformed input is an error, never a panic.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use memmap2::Mmap;
use object::{
    Endianness, Object as _, ObjectSection as _, ObjectSymbol as _,
    elf::{EM_X86_64, PF_X, PT_LOAD, STT_FUNC, STT_GNU_IFUNC},
    read::elf::{ElfFile64, ProgramHeader as _},
};

use crate::{
    error::{Error, Result},
    sys,
};

/// Which symbol table a symbol came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SymbolSource {
    Symtab,
    Dynsym,
    /// Go's function table (`.gopclntab`).
    Pclntab,
}

/// What a function symbol is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// Ordinary code.
    Function,
    /// A GNU indirect function: the symbol's address is the resolver that picks the
    /// implementation at load time, not code that runs per call.
    Ifunc,
}

/// A defined function symbol of an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSymbol {
    pub name: String,
    /// Virtual address in the file's own address space (`st_value`).
    pub address: u64,
    pub size: u64,
    pub kind: FunctionKind,
    pub source: SymbolSource,
}

/// The bytes of an ELF file: mapped from disk, or in memory (MiniDebugInfo is an ELF file
/// embedded xz-compressed in another).
enum Backing {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(map) => map,
            Self::Owned(bytes) => bytes,
        }
    }
}

/// Sections whose decompressed contents are cached (the DWARF sections gimli reads).
const CACHED_SECTIONS: [&str; 14] = [
    ".debug_abbrev",
    ".debug_addr",
    ".debug_aranges",
    ".debug_info",
    ".debug_line",
    ".debug_line_str",
    ".debug_loc",
    ".debug_loclists",
    ".debug_ranges",
    ".debug_rnglists",
    ".debug_str",
    ".debug_str_offsets",
    ".debug_types",
    ".debug_frame",
];

/// MiniDebugInfo is a symbol table: far below this.
const MAX_MINI_DEBUGINFO: usize = 256 << 20;

/// A `Vec` that refuses to grow past `limit` bytes.
struct LimitedWriter {
    bytes: Vec<u8>,
    limit: usize,
}

impl std::io::Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + data.len() > self.limit {
            return Err(std::io::Error::other("decompressed size over the limit"));
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An ELF file, memory-mapped, with its compressed sections decompressed on first use.
pub struct ElfFile {
    path: PathBuf,
    data: Backing,
    decompressed: [std::sync::OnceLock<Option<Box<[u8]>>>; CACHED_SECTIONS.len()],
}

impl std::fmt::Debug for ElfFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfFile").field("path", &self.path).finish()
    }
}

const ELF_MAGIC: &[u8] = b"\x7fELF";

impl ElfFile {
    /// Opens and maps `path`, checking that it is a 64-bit ELF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| Error::io(&path, source))?;
        // Binaries being traced are not rewritten in place: installers replace them by
        // rename, which leaves our mapping intact.
        let data = sys::map_read_only(&file).map_err(|source| Error::io(&path, source))?;
        Self::from_backing(path, Backing::Mapped(data))
    }

    /// An ELF file held in memory; `path` names it in messages.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        Self::from_backing(path.into(), Backing::Owned(bytes))
    }

    fn from_backing(path: PathBuf, data: Backing) -> Result<Self> {
        let elf = Self {
            path,
            data,
            decompressed: Default::default(),
        };
        elf.parse()?;
        Ok(elf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn parse(&self) -> Result<ElfFile64<'_, Endianness>> {
        if !self.data.starts_with(ELF_MAGIC) {
            return Err(Error::NotElf {
                path: self.path.clone(),
            });
        }
        // e_ident[EI_CLASS]: 1 is 32-bit, 2 is 64-bit.
        if self.data.get(4) == Some(&1) {
            return Err(Error::Unsupported(format!(
                "{} is a 32-bit ELF file: koolkit-trace traces 64-bit x86-64 programs",
                self.path.display()
            )));
        }
        let elf = ElfFile64::parse(&*self.data).map_err(|err| Error::BadElf {
            path: self.path.clone(),
            reason: err.to_string(),
        })?;
        let machine = elf.elf_header().e_machine.get(elf.endian());
        if machine != EM_X86_64 {
            return Err(Error::Unsupported(format!(
                "{} is built for another machine (ELF e_machine {machine}); koolkit-trace \
                 traces x86-64 code",
                self.path.display()
            )));
        }
        Ok(elf)
    }

    /// Every defined function symbol: `.symtab` first, then `.dynsym` entries it lacks.
    pub fn functions(&self) -> Result<Vec<FunctionSymbol>> {
        let elf = self.parse()?;
        // `.gnu.version` marks compatibility versions (`memcpy@GLIBC_2.2.5`) hidden; programs
        // built today bind to the default one (`memcpy@@GLIBC_2.14`).
        let versions = elf
            .elf_section_table()
            .versions(elf.endian(), elf.data())
            .ok()
            .flatten();
        let mut functions = Vec::new();
        let mut hidden_versions = Vec::new();
        let tables = [
            (SymbolSource::Symtab, elf.symbols()),
            (SymbolSource::Dynsym, elf.dynamic_symbols()),
        ];
        for (source, symbols) in tables {
            for symbol in symbols {
                let kind = match symbol.elf_symbol().st_type() {
                    STT_FUNC => FunctionKind::Function,
                    STT_GNU_IFUNC => FunctionKind::Ifunc,
                    _ => continue,
                };
                if symbol.is_undefined() || symbol.address() == 0 {
                    continue;
                }
                let Ok(name) = symbol.name() else { continue };
                if name.is_empty() {
                    continue;
                }
                let address = symbol.address();
                let function = FunctionSymbol {
                    name: name.to_string(),
                    address,
                    size: symbol.size(),
                    kind,
                    source,
                };
                let hidden = source == SymbolSource::Dynsym
                    && versions
                        .as_ref()
                        .is_some_and(|v| v.version_index(elf.endian(), symbol.index()).is_hidden());
                if hidden {
                    hidden_versions.push(function);
                } else {
                    functions.push(function);
                }
            }
        }
        // The same symbol is often in both tables: sort, then keep the `.symtab` copy
        // (sorting beats hashing tens of thousands of names).
        functions.sort_unstable_by(|a, b| {
            (a.address, &a.name, a.source).cmp(&(b.address, &b.name, b.source))
        });
        functions.dedup_by(|later, kept| later.address == kept.address && later.name == kept.name);
        // A compatibility version counts only where no default version has its name.
        if !hidden_versions.is_empty() {
            let names: std::collections::HashSet<&str> =
                functions.iter().map(|f| f.name.as_str()).collect();
            let extra: Vec<FunctionSymbol> = hidden_versions
                .into_iter()
                .filter(|f| !names.contains(f.name.as_str()))
                .collect();
            functions.extend(extra);
        }
        Ok(functions)
    }

    /// The file offset of virtual address `address`, if an executable `PT_LOAD` segment maps it.
    pub fn file_offset(&self, address: u64) -> Result<Option<u64>> {
        let elf = self.parse()?;
        let endian = elf.endian();
        for header in elf.elf_program_headers() {
            if header.p_type(endian) != PT_LOAD || header.p_flags(endian) & PF_X == 0 {
                continue;
            }
            let vaddr = header.p_vaddr(endian);
            let filesz = header.p_filesz(endian);
            if address >= vaddr && address - vaddr < filesz {
                return (address - vaddr)
                    .checked_add(header.p_offset(endian))
                    .map(Some)
                    .ok_or_else(|| Error::BadElf {
                        path: self.path.clone(),
                        reason: format!("segment offset overflows at {address:#x}"),
                    });
            }
        }
        Ok(None)
    }

    /// The virtual address that file offset `offset` is loaded at, if a `PT_LOAD` segment
    /// maps it (the inverse of [`file_offset`](Self::file_offset), for any segment).
    pub fn address_of_offset(&self, offset: u64) -> Option<u64> {
        let elf = self.parse().ok()?;
        let endian = elf.endian();
        elf.elf_program_headers().iter().find_map(|header| {
            let start = header.p_offset(endian);
            let in_segment = header.p_type(endian) == PT_LOAD
                && offset >= start
                && offset - start < header.p_filesz(endian);
            in_segment.then(|| header.p_vaddr(endian) + (offset - start))
        })
    }

    /// The GNU build-id note, if any.
    pub fn build_id(&self) -> Option<Vec<u8>> {
        self.parse()
            .ok()?
            .build_id()
            .ok()
            .flatten()
            .map(<[u8]>::to_vec)
    }

    /// The GNU build-id in lower-case hex, as debug-file paths and trace files spell it.
    pub fn build_id_hex(&self) -> Option<String> {
        self.build_id().map(|id| hex(&id))
    }

    /// The `.gnu_debuglink` file name and CRC, if any.
    pub fn debuglink(&self) -> Option<(String, u32)> {
        let elf = self.parse().ok()?;
        let (name, crc) = elf.gnu_debuglink().ok().flatten()?;
        Some((String::from_utf8_lossy(name).into_owned(), crc))
    }

    /// The address of section `name`, if the file has it.
    pub fn section_address(&self, name: &str) -> Option<u64> {
        use object::ObjectSection as _;
        self.parse()
            .ok()?
            .section_by_name(name)
            .map(|s| s.address())
    }

    /// The contents of section `name`, decompressed if needed; `None` if there is none.
    pub fn section(&self, name: &str) -> Result<Option<&[u8]>> {
        let elf = self.parse()?;
        let Some(section) = elf.section_by_name(name) else {
            return Ok(None);
        };
        let bad = |err: object::Error| Error::BadElf {
            path: self.path.clone(),
            reason: format!("section {name}: {err}"),
        };
        let compressed = section.compressed_file_range().map_err(bad)?;
        if compressed.format == object::CompressionFormat::None {
            return section.data().map(Some).map_err(bad);
        }
        // A corrupt header could claim any size; no real debug section comes near this.
        const MAX_DECOMPRESSED: u64 = 2 << 30;
        if compressed.uncompressed_size > MAX_DECOMPRESSED
            || compressed.uncompressed_size > compressed.compressed_size.saturating_mul(1024)
        {
            return Err(Error::BadElf {
                path: self.path.clone(),
                reason: format!(
                    "section {name} claims {} bytes when decompressed",
                    compressed.uncompressed_size
                ),
            });
        }
        let Some(slot) = CACHED_SECTIONS.iter().position(|&cached| cached == name) else {
            return Err(Error::BadElf {
                path: self.path.clone(),
                reason: format!("section {name} is compressed"),
            });
        };
        let decompressed = self.decompressed[slot].get_or_init(|| {
            section
                .uncompressed_data()
                .ok()
                .map(|data| data.into_owned().into_boxed_slice())
        });
        match decompressed {
            Some(data) => Ok(Some(data)),
            None => Err(Error::BadElf {
                path: self.path.clone(),
                reason: format!("section {name} does not decompress"),
            }),
        }
    }

    /// Whether the file has a section called `name`.
    pub fn has_section(&self, name: &str) -> bool {
        self.parse()
            .is_ok_and(|elf| elf.section_by_name(name).is_some())
    }

    /// Whether the file is a Go program (its runtime tables are there even when stripped).
    pub fn is_go(&self) -> bool {
        self.go_pclntab_section().is_some() || self.has_section(".go.buildinfo")
    }

    /// The name of the section holding Go's function table: `.gopclntab`, or in a PIE
    /// built by Go before 1.26 `.data.rel.ro.gopclntab` (it holds relocated words there).
    pub fn go_pclntab_section(&self) -> Option<&'static str> {
        [".gopclntab", ".data.rel.ro.gopclntab"]
            .into_iter()
            .find(|name| self.has_section(name))
    }

    /// The address of the symbol `name` in the symbol table, if the file has one with it.
    pub fn symbol_address(&self, name: &str) -> Option<u64> {
        use object::{Object as _, ObjectSymbol as _};
        self.parse()
            .ok()?
            .symbols()
            .find(|symbol| symbol.name_bytes() == Ok(name.as_bytes()))
            .map(|symbol| symbol.address())
    }

    /// Calls `visit` with the name of every symbol of `.symtab` and `.dynsym`, defined or
    /// imported.
    pub fn for_each_symbol_name(&self, mut visit: impl FnMut(&[u8])) {
        use object::{Object as _, ObjectSymbol as _};
        let Ok(elf) = self.parse() else {
            return;
        };
        for symbol in elf.symbols().chain(elf.dynamic_symbols()) {
            if let Ok(name) = symbol.name_bytes() {
                visit(name);
            }
        }
    }

    /// Whether the file is position independent (an ET_DYN executable or a library).
    pub fn is_position_independent(&self) -> bool {
        use object::Object as _;
        self.parse()
            .is_ok_and(|elf| elf.kind() == object::ObjectKind::Dynamic)
    }

    /// The Go release that built the file (`go1.19.8`), from its build info; `None` for a Go
    /// file whose build info does not read (or a file that is not Go).
    pub fn go_version(&self) -> Option<String> {
        let info = self.section(".go.buildinfo").ok()??;
        parse_go_buildinfo(info, |address, len| {
            let offset = self.file_offset(address).ok()??;
            Some(self.bytes_at(offset, len).to_vec())
        })
    }

    /// Whether the file carries DWARF debug information.
    pub fn has_dwarf(&self) -> bool {
        let Ok(elf) = self.parse() else { return false };
        elf.section_by_name(".debug_info")
            .is_some_and(|section| section.size() > 0)
    }

    /// The MiniDebugInfo of the file: `.gnu_debugdata`, an xz-compressed ELF file holding the
    /// symbol table of a stripped binary (Fedora and others ship it).
    pub fn mini_debuginfo(&self) -> Result<Option<Self>> {
        let Some(compressed) = self.section(".gnu_debugdata")? else {
            return Ok(None);
        };
        let mut bytes = LimitedWriter {
            bytes: Vec::new(),
            limit: MAX_MINI_DEBUGINFO,
        };
        lzma_rs::xz_decompress(&mut std::io::Cursor::new(compressed), &mut bytes).map_err(
            |err| Error::BadElf {
                path: self.path.clone(),
                reason: format!(".gnu_debugdata is not valid xz, or too large: {err}"),
            },
        )?;
        let bytes = bytes.bytes;
        let name = format!("{} (MiniDebugInfo)", self.path.display());
        Self::from_bytes(name, bytes).map(Some)
    }

    /// The bytes of the file at `offset..offset + len`, clamped to the file.
    pub fn bytes_at(&self, offset: u64, len: usize) -> &[u8] {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        let end = start.saturating_add(len).min(self.data.len());
        &self.data[start..end]
    }
}

/// The Go version in a `.go.buildinfo` section: `\xff Go buildinf:`, pointer size, flags,
/// then (flag 2, Go 1.18+) the version as a varint-prefixed string, or (Go 1.17 and older)
/// pointers to a Go string header `{ptr, len}`, read through `read(address, len)`.
pub fn parse_go_buildinfo(
    info: &[u8],
    read: impl Fn(u64, usize) -> Option<Vec<u8>>,
) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if !info.starts_with(MAGIC) || info.len() < 32 {
        return None;
    }
    let (pointer_size, flags) = (info[14] as usize, info[15]);
    let text = if flags & 2 != 0 {
        let mut length = 0usize;
        let mut at = 32;
        for shift in (0..35).step_by(7) {
            let byte = *info.get(at)?;
            at += 1;
            length |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        info.get(at..at + length)?.to_vec()
    } else {
        if pointer_size != 8 {
            return None;
        }
        let header = u64::from_le_bytes(info.get(16..24)?.try_into().ok()?);
        let string = read(header, 16)?;
        let data = u64::from_le_bytes(string.get(..8)?.try_into().ok()?);
        let length = u64::from_le_bytes(string.get(8..16)?.try_into().ok()?);
        read(data, usize::try_from(length).ok()?.min(64))?
    };
    let version = String::from_utf8(text).ok()?;
    version.starts_with("go").then_some(version)
}

/// The (major, minor) of a Go version string: `go1.19.8` → (1, 19), `go1.21rc2` → (1, 21).
pub fn go_release(version: &str) -> Option<(u32, u32)> {
    let rest = version.strip_prefix("go")?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// `bytes` in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_build_info_gives_the_release() {
        let mut inline = b"\xff Go buildinf:\x08\x02".to_vec();
        inline.resize(32, 0);
        inline.push(8);
        inline.extend_from_slice(b"go1.19.8");
        assert_eq!(
            parse_go_buildinfo(&inline, |_, _| None).as_deref(),
            Some("go1.19.8")
        );
        let mut pointers = b"\xff Go buildinf:\x08\x00".to_vec();
        pointers.extend_from_slice(&0x1000u64.to_le_bytes());
        pointers.resize(32, 0);
        let memory = |address: u64, len: usize| match address {
            0x1000 => Some([0x2000u64.to_le_bytes(), 7u64.to_le_bytes()].concat()),
            0x2000 => Some(b"go1.16.5"[..len.min(8)].to_vec()),
            _ => None,
        };
        assert_eq!(
            parse_go_buildinfo(&pointers, memory).as_deref(),
            Some("go1.16.")
        );
        assert_eq!(go_release("go1.19.8"), Some((1, 19)));
        assert_eq!(go_release("go1.21rc2"), Some((1, 21)));
        assert_eq!(go_release("devel"), None);
    }

    #[test]
    fn reads_own_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let elf = ElfFile::open(&exe).unwrap();
        let functions = elf.functions().unwrap();
        let main = functions
            .iter()
            .find(|f| f.name == "main")
            .expect("main symbol");
        assert_eq!(main.kind, FunctionKind::Function);
        let offset = elf
            .file_offset(main.address)
            .unwrap()
            .expect("main is in a PT_LOAD");
        // The bytes at the file offset are the function's code: not all zero.
        assert!(elf.bytes_at(offset, 16).iter().any(|&b| b != 0));
    }

    #[test]
    fn libc_has_ifuncs_and_plain_functions() {
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        let elf = ElfFile::open(libc).unwrap();
        let functions = elf.functions().unwrap();
        let malloc = functions.iter().find(|f| f.name == "malloc").unwrap();
        assert_eq!(malloc.kind, FunctionKind::Function);
        assert_eq!(malloc.source, SymbolSource::Dynsym);
        let strlen = functions.iter().find(|f| f.name == "strlen").unwrap();
        assert_eq!(strlen.kind, FunctionKind::Ifunc);
        // memcpy@GLIBC_2.2.5 is a plain function kept for old binaries; the default
        // memcpy@@GLIBC_2.14 is an IFUNC, and only the default is found by name.
        let memcpys: Vec<_> = functions.iter().filter(|f| f.name == "memcpy").collect();
        assert_eq!(memcpys.len(), 1, "{memcpys:?}");
        assert_eq!(memcpys[0].kind, FunctionKind::Ifunc);
    }

    #[test]
    fn rejects_non_elf_and_truncated_files() {
        let dir = std::env::temp_dir().join(format!("kt-elf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("text");
        std::fs::write(&text, b"#!/bin/sh\necho hi\n").unwrap();
        assert!(matches!(ElfFile::open(&text), Err(Error::NotElf { .. })));

        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for len in [4, 20, 63] {
            let cut = dir.join(format!("cut{len}"));
            std::fs::write(&cut, &exe[..len]).unwrap();
            assert!(
                matches!(ElfFile::open(&cut), Err(Error::BadElf { .. })),
                "len {len}"
            );
        }
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(ElfFile::open(&empty).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let err = ElfFile::open("/nonexistent/koolkit").unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert_eq!(err.exit_code(), crate::error::exit_code::USAGE);
    }
}
