//! The files that reviews write (`merge -o`, `export -o`): never one of the files they read,
//! and never seen half-written. Output goes to a temporary file in the same folder and is
//! renamed into place once complete, so a failed or interrupted run leaves the old file as
//! it was.

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

/// Refuses an `output` that is one of `inputs` (the same device and inode, so also through a
/// symlink or another path), which writing would destroy while it is read.
pub fn refuse_input_as_output(inputs: &[PathBuf], output: &Path) -> Result<()> {
    let Ok(out) = fs::metadata(output) else {
        return Ok(());
    };
    for input in inputs {
        if let Ok(meta) = fs::metadata(input)
            && (meta.dev(), meta.ino()) == (out.dev(), out.ino())
        {
            return Err(Error::Usage(format!(
                "the output {} is the input {}: writing it would destroy what is being read; \
                 choose another output file",
                output.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// An output being written under a temporary name beside its final path.
#[derive(Debug)]
pub struct StagedOutput {
    temporary: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl StagedOutput {
    pub fn new(target: &Path) -> Self {
        let name = target
            .file_name()
            .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        let temporary = target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        Self {
            temporary,
            target: target.to_path_buf(),
            committed: false,
        }
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.temporary
    }

    /// Puts the complete output in place.
    pub fn commit(mut self) -> Result<()> {
        fs::rename(&self.temporary, &self.target)
            .map_err(|source| Error::write(&self.target, source))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_is_refused_as_output_through_any_path() {
        let dir = std::env::temp_dir().join(format!("kt-output-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let input = dir.join("a.kt");
        fs::write(&input, b"x").unwrap();
        let link = dir.join("link.kt");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let inputs = [input.clone()];
        assert!(refuse_input_as_output(&inputs, &input).is_err());
        assert!(refuse_input_as_output(&inputs, &link).is_err());
        assert!(refuse_input_as_output(&inputs, &dir.join("new.kt")).is_ok());

        let staged = StagedOutput::new(&dir.join("out.kt"));
        fs::write(staged.path(), b"done").unwrap();
        staged.commit().unwrap();
        assert_eq!(fs::read(dir.join("out.kt")).unwrap(), b"done");
        let abandoned = StagedOutput::new(&dir.join("out.kt"));
        fs::write(abandoned.path(), b"half").unwrap();
        let temporary = abandoned.path().to_path_buf();
        drop(abandoned);
        assert!(!temporary.exists());
        assert_eq!(fs::read(dir.join("out.kt")).unwrap(), b"done");
        fs::remove_dir_all(&dir).unwrap();
    }
}
