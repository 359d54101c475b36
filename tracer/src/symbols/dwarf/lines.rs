//! Source lines: the file names of a unit's line program, a function's declaration file, and
//! the addresses of the statements of `FILE:LINE` (for `--fn server.c:42`).

use gimli::{AttributeValue, constants};

use super::{DebugInfo, Die, Unit};
use crate::error::Result;

/// What a source position resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineMatches {
    /// Statement addresses of the line.
    pub addresses: Vec<u64>,
    /// The source files that matched the name.
    pub files: Vec<String>,
    /// Lines with code in those files, nearest first (for suggestions).
    pub nearby: Vec<u64>,
}

impl<'a> DebugInfo<'a> {
    pub(super) fn decl_file(
        &self,
        unit: &Unit<'a>,
        chain: &[Die<'a>],
    ) -> gimli::Result<Option<String>> {
        let Some(index) = chain
            .iter()
            .find_map(|e| e.attr_value(constants::DW_AT_decl_file))
            .and_then(|v| match v {
                AttributeValue::FileIndex(index) => Some(index),
                other => other.udata_value(),
            })
        else {
            return Ok(None);
        };
        self.file_name(unit, index)
    }

    /// File `index` of the unit's line program, with its directory when that is not the
    /// compilation directory.
    fn file_name(&self, unit: &Unit<'a>, index: u64) -> gimli::Result<Option<String>> {
        let Some(program) = &unit.line_program else {
            return Ok(None);
        };
        let header = program.header();
        let Some(file) = header.file(index) else {
            return Ok(None);
        };
        let name = self
            .dwarf
            .attr_string(unit, file.path_name())?
            .to_string_lossy()
            .into_owned();
        if name.starts_with('/') {
            return Ok(Some(name));
        }
        let directory = match file.directory(header) {
            Some(dir) => self
                .dwarf
                .attr_string(unit, dir)?
                .to_string_lossy()
                .into_owned(),
            None => String::new(),
        };
        let comp_dir = unit.comp_dir.map(|d| d.to_string_lossy().into_owned());
        if directory.is_empty() || Some(&directory) == comp_dir.as_ref() {
            Ok(Some(name))
        } else {
            Ok(Some(format!("{}/{name}", directory.trim_end_matches('/'))))
        }
    }

    /// Addresses of the statements of `line` in source files ending in `file`.
    pub fn line_addresses(&self, file: &str, line: u64) -> Result<LineMatches> {
        self.scan_lines(file, line)
            .map_err(|err| self.malformed("line table", err))
    }

    fn scan_lines(&self, file: &str, line: u64) -> gimli::Result<LineMatches> {
        let mut matches = LineMatches::default();
        let mut units = self.dwarf.units();
        while let Some(header) = units.next()? {
            let unit = self.dwarf.unit(header)?;
            let Some(program) = unit.line_program.clone() else {
                continue;
            };
            // Which file indexes of this unit are the file asked for.
            let mut wanted = Vec::new();
            let files = program.header().file_names().len() as u64;
            let first = if program.header().version() >= 5 {
                0
            } else {
                1
            };
            for index in first..first + files {
                if let Some(name) = self.file_name(&unit, index)?
                    && path_ends_with(&name, file)
                {
                    wanted.push(index);
                    matches.files.push(name);
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let mut rows = program.rows();
            while let Some((_, row)) = rows.next_row()? {
                if row.end_sequence() || !row.is_stmt() || !wanted.contains(&row.file_index()) {
                    continue;
                }
                let Some(row_line) = row.line().map(|l| l.get()) else {
                    continue;
                };
                if row_line == line {
                    matches.addresses.push(row.address());
                } else {
                    matches.nearby.push(row_line);
                }
            }
        }
        matches.addresses.sort_unstable();
        matches.addresses.dedup();
        matches.files.sort();
        matches.files.dedup();
        matches.nearby.sort_unstable_by_key(|l| l.abs_diff(line));
        matches.nearby.dedup();
        matches.nearby.truncate(5);
        Ok(matches)
    }
}

/// Whether `path` ends with the path components of `suffix` (`src/server.c` matches
/// `/home/me/app/src/server.c` but not `/x/mysrc/server.c`).
pub fn path_ends_with(path: &str, suffix: &str) -> bool {
    let suffix = suffix.trim_start_matches("./");
    path == suffix
        || path
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_paths_match_by_whole_components() {
        assert!(path_ends_with("/home/me/app/src/server.c", "src/server.c"));
        assert!(path_ends_with("/home/me/app/src/server.c", "server.c"));
        assert!(path_ends_with("server.c", "./server.c"));
        assert!(!path_ends_with("/x/mysrc/server.c", "src/server.c"));
        assert!(!path_ends_with("/x/server.cc", "server.c"));
    }
}
