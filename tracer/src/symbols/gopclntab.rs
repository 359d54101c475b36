//! Go's function table, `.gopclntab`: every Go function's name, entry and size, present even
//! in release builds stripped of their symbol table and DWARF (`-ldflags=-s -w`), because the
//! runtime needs it to unwind stacks.
//!
//! Layouts read: Go 1.16–1.17 (magic `0xfffffffa`: absolute entry PCs) and Go 1.18 and newer
//! (`0xfffffff0`, `0xfffffff1` from 1.20: entries as offsets from `textStart`). A zero
//! `textStart` (Go 1.26 moved the module data out of the header) falls back to the caller's
//! text base: [`module_text`] from `.go.module`, else the `.text` section. Malformed tables
//! give what reads before the damage, never a panic.

/// One function of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunction {
    pub name: String,
    pub address: u64,
    pub size: u64,
    /// Where it is defined (Go 1.18 and newer tables): the file, and the line of its `func`.
    pub source: Option<(String, u32)>,
}

/// The first value of a pc-value table at `at`: what it holds at the function's entry. Each
/// entry is a zig-zag varint delta from the value before (starting at -1), then a pc delta.
fn entry_value(table: &[u8], at: usize) -> Option<i64> {
    let mut delta = 0u64;
    for (i, &byte) in table.get(at..)?.iter().take(10).enumerate() {
        delta |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let step = if delta & 1 != 0 {
                -((delta >> 1) as i64) - 1
            } else {
                (delta >> 1) as i64
            };
            return Some(-1 + step);
        }
    }
    None
}

/// The source of the `_func` record at `record` (Go 1.18+): its file from the pcfile table's
/// entry value (an index into its unit's slice of `cutab`), its line from `startLine` (1.20+)
/// or the pcln table's entry value.
fn source_of(
    table: &[u8],
    record: usize,
    offsets: &Tables,
    start_line: bool,
) -> Option<(String, u32)> {
    let field = |at: usize| uint(table, record.checked_add(at)?, 4);
    let (pcfile, pcln, unit) = (field(20)?, field(24)?, field(32)?);
    if pcfile == 0 {
        return None;
    }
    let file_index = entry_value(table, offsets.pctab.checked_add(pcfile as usize)?)?;
    let slot = (unit as usize).checked_add(usize::try_from(file_index).ok()?)?;
    let file_at = uint(table, offsets.cutab.checked_add(slot.checked_mul(4)?)?, 4)?;
    if file_at == u64::from(u32::MAX) {
        return None;
    }
    let file = c_string(table, offsets.filetab.checked_add(file_at as usize)?)?;
    let line = if start_line {
        field(36)? as u32 as i32
    } else if pcln != 0 {
        i32::try_from(entry_value(
            table,
            offsets.pctab.checked_add(pcln as usize)?,
        )?)
        .ok()?
    } else {
        0
    };
    Some((file, u32::try_from(line).ok().filter(|&l| l > 0)?))
}

/// Where the 1.18+ header says the tables are, from the start of the section.
struct Tables {
    cutab: usize,
    filetab: usize,
    pctab: usize,
}

fn uint(table: &[u8], at: usize, size: usize) -> Option<u64> {
    let bytes = table.get(at..at.checked_add(size)?)?;
    let mut word = [0u8; 8];
    word[..size].copy_from_slice(bytes);
    Some(u64::from_le_bytes(word))
}

fn c_string(table: &[u8], at: usize) -> Option<String> {
    let bytes = table.get(at..)?;
    let end = bytes.iter().position(|&b| b == 0)?;
    String::from_utf8(bytes[..end].to_vec()).ok()
}

/// The start of the text from Go 1.26's `.go.module` section (the runtime's `moduledata`):
/// its first word points at the pclntab header, which checks the layout, and its 23rd is
/// `text`. None where the words are not there, or are left to relocations (a PIE's zeros).
pub fn module_text(module: &[u8], pclntab_address: u64) -> Option<u64> {
    const PC_HEADER: usize = 0;
    // pcHeader, 6 slices of 3 words, findfunctab, minpc, maxpc, then text.
    const TEXT: usize = 1 + 6 * 3 + 3;
    let header = uint(module, PC_HEADER * 8, 8)?;
    let text = uint(module, TEXT * 8, 8)?;
    (header == pclntab_address && text != 0).then_some(text)
}

/// The functions of the `.gopclntab` section `table`; `text_base` is where the text starts
/// (`runtime.text`, or the `.text` section), used when the header does not say.
pub fn functions(table: &[u8], text_base: u64) -> Vec<GoFunction> {
    let Some(magic) = uint(table, 0, 4) else {
        return Vec::new();
    };
    let relative = match magic {
        0xffff_fff0 | 0xffff_fff1 => true,
        0xffff_fffa => false,
        _ => return Vec::new(),
    };
    let word = usize::from(*table.get(7).unwrap_or(&0));
    if word != 8 {
        return Vec::new();
    }
    // Header: magic, pad, minLC, ptrSize, then words: nfunc, nfiles, [textStart,]
    // funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset.
    let field = |index: usize| uint(table, 8 + index * word, word);
    let (Some(count), Some(_files)) = (field(0), field(1)) else {
        return Vec::new();
    };
    let tables = relative
        .then(|| {
            Some(Tables {
                cutab: field(4)? as usize,
                filetab: field(5)? as usize,
                pctab: field(6)? as usize,
            })
        })
        .flatten();
    let start_line = magic == 0xffff_fff1;
    let (text_start, names, functab) = if relative {
        let start = field(2).unwrap_or(0);
        (
            if start == 0 { text_base } else { start },
            field(3),
            field(7),
        )
    } else {
        (0, field(2), field(6))
    };
    let (Some(names), Some(functab)) = (names, functab) else {
        return Vec::new();
    };
    let (names, functab) = (names as usize, functab as usize);
    // Pairs of (entry, offset of the _func record); one more entry ends the last function.
    let pair = if relative { 8 } else { 2 * word };
    let half = pair / 2;
    // Offsets past the address space read nothing (a damaged header), never overflow.
    let entry = |i: usize| uint(table, functab.checked_add(i * pair)?, half);
    let record = |i: usize| uint(table, functab.checked_add(i * pair + half)?, half);
    let count = (count as usize).min(table.len() / pair);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let (Some(start), Some(end), Some(func)) = (entry(i), entry(i + 1), record(i)) else {
            break;
        };
        // The _func record: its entry (u32 offset, or a word), then the name's offset (i32).
        let Some(record_at) = functab.checked_add(func as usize) else {
            break;
        };
        let name_at = record_at.saturating_add(if relative { 4 } else { word });
        let Some(name_offset) = uint(table, name_at, 4) else {
            break;
        };
        // A damaged offset points nowhere, never past the address space.
        let name_at = names.checked_add_signed(name_offset as u32 as i32 as isize);
        let Some(name) = name_at.and_then(|at| c_string(table, at)) else {
            continue;
        };
        let address = if relative {
            text_start.wrapping_add(start)
        } else {
            start
        };
        let source = tables
            .as_ref()
            .and_then(|tables| source_of(table, record_at, tables, start_line));
        out.push(GoFunction {
            name,
            address,
            size: end.saturating_sub(start),
            source,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Go 1.18+ table with the functions (name, entry offset) and text ending at `end`.
    fn table(functions: &[(&str, u32)], end: u32, text_start: u64) -> Vec<u8> {
        let mut names = Vec::new();
        let mut name_offsets = Vec::new();
        for (name, _) in functions {
            name_offsets.push(names.len() as u32);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let header_len = 8 + 8 * 8;
        let names_at = header_len;
        let functab_at = names_at + names.len();
        let pairs = (functions.len() + 1) * 8;
        let mut records = Vec::new();
        let mut functab = Vec::new();
        for ((_, entry), name_offset) in functions.iter().zip(&name_offsets) {
            functab.extend_from_slice(&entry.to_le_bytes());
            functab.extend_from_slice(&((pairs + records.len()) as u32).to_le_bytes());
            records.extend_from_slice(&entry.to_le_bytes());
            records.extend_from_slice(&name_offset.to_le_bytes());
        }
        functab.extend_from_slice(&end.to_le_bytes());
        functab.extend_from_slice(&0u32.to_le_bytes());
        let mut out = vec![0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8];
        for value in [
            functions.len() as u64,
            1,
            text_start,
            names_at as u64,
            0,
            0,
            0,
            functab_at as u64,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&names);
        out.extend_from_slice(&functab);
        out.extend_from_slice(&records);
        out
    }

    #[test]
    fn reads_names_entries_and_sizes() {
        let bytes = table(
            &[("main.main", 0x100), ("main.(*Server).Serve", 0x180)],
            0x200,
            0x401000,
        );
        assert_eq!(
            functions(&bytes, 0),
            vec![
                GoFunction {
                    name: "main.main".into(),
                    address: 0x401100,
                    size: 0x80,
                    source: None,
                },
                GoFunction {
                    name: "main.(*Server).Serve".into(),
                    address: 0x401180,
                    size: 0x80,
                    source: None,
                },
            ]
        );
        // Go 1.26 zeroes textStart: the caller's text base is used.
        let zeroed = table(&[("main.main", 0x10)], 0x20, 0);
        assert_eq!(functions(&zeroed, 0x500000)[0].address, 0x500010);
    }

    #[test]
    fn module_text_is_read_where_the_module_data_points_at_the_table() {
        // The first 24 words of a Go 1.26.6 build's .go.module.
        let words: [u64; 24] = [
            0x4d8f08, 0x4d8f50, 0x145a0, 0x145a0, 0x4ed4f0, 0x390, 0x390, 0x4ee330, 0x29b8, 0x29b8,
            0x4f0ce8, 0x41120, 0x41120, 0x531e08, 0x2bd60, 0x2bd60, 0x531e08, 0x7b2, 0x7b2,
            0x57d928, 0x401000, 0x4a1661, 0x401000, 0x4a1670,
        ];
        let module: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(module_text(&module, 0x4d8f08), Some(0x401000));
        assert_eq!(
            module_text(&module, 0x4d9000),
            None,
            "another table's module"
        );
        assert_eq!(module_text(&module[..100], 0x4d8f08), None);
    }

    #[test]
    fn damaged_tables_give_what_reads_never_a_panic() {
        let bytes = table(&[("a.b", 0), ("c.d", 8)], 16, 0x1000);
        for cut in 0..bytes.len() {
            let _ = functions(&bytes[..cut], 0x1000);
        }
        let mut flipped = bytes.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = functions(&flipped, 0x1000);
            flipped[i] ^= 0xff;
        }
        assert!(functions(b"not a table", 0).is_empty());
        // Offsets near the end of the address space, and a negative name offset.
        for (word, value) in [(7, u64::MAX - 3), (3, u64::MAX), (2, u64::MAX)] {
            let mut huge = bytes.clone();
            huge[8 + word * 8..16 + word * 8].copy_from_slice(&value.to_le_bytes());
            let _ = functions(&huge, 0x1000);
        }
        let mut negative = bytes.clone();
        let last = negative.len() - 4;
        negative[last..].copy_from_slice(&0x8000_0000u32.to_le_bytes());
        let _ = functions(&negative, 0x1000);
    }
}
