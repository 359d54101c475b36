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
    Endianness, Object as _, ObjectSymbol as _,
    elf::{PF_X, PT_LOAD, STT_FUNC, STT_GNU_IFUNC},
    read::elf::{ElfFile64, ProgramHeader as _},
};

use crate::error::{Error, Result};

/// Which symbol table a symbol came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SymbolSource {
    Symtab,
    Dynsym,
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

/// An ELF file, memory-mapped.
pub struct ElfFile {
    path: PathBuf,
    data: Mmap,
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
        // SAFETY: the map is read-only and private. A file truncated underneath us could fault
        // on access; binaries being traced are not rewritten in place (installers replace them
        // by rename, which leaves our mapping intact).
        let data = unsafe { Mmap::map(&file) }.map_err(|source| Error::io(&path, source))?;
        let elf = Self { path, data };
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
        ElfFile64::parse(&*self.data).map_err(|err| Error::BadElf {
            path: self.path.clone(),
            reason: err.to_string(),
        })
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
                // `.dynsym` names may carry a version (`malloc@@GLIBC_2.2.5`) in some readers;
                // object gives the bare name, and the same symbol is often in both tables.
                let address = symbol.address();
                if source == SymbolSource::Dynsym
                    && functions
                        .iter()
                        .any(|f: &FunctionSymbol| f.address == address && f.name == name)
                {
                    continue;
                }
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
        // A compatibility version counts only where no default version has its name.
        for function in hidden_versions {
            if !functions.iter().any(|f| f.name == function.name) {
                functions.push(function);
            }
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
                return Ok(Some(address - vaddr + header.p_offset(endian)));
            }
        }
        Ok(None)
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

#[cfg(test)]
mod tests {
    use super::*;

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
