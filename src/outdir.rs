//! An output folder filled all or nothing: files are written into a hidden staging folder
//! inside it while the work runs, and moved into place (a rename each) only once every input
//! has succeeded. On failure the staging folder goes, and the output folder too if this run
//! created it, so an error never leaves part of a result behind.

use std::path::{Path, PathBuf};

use crate::bad_input;
use crate::error::{Error, Result};

pub struct Staged {
    out: PathBuf,
    staging: PathBuf,
    created_out: bool,
}

impl Staged {
    /// Create `out` (if missing) and the staging folder inside it; both must be writable.
    pub fn new(out: &Path) -> Result<Staged> {
        let created_out = !out.exists();
        std::fs::create_dir_all(out)
            .map_err(|e| bad_input!("{}: cannot create the output folder: {e}", out.display()))?;
        let staging = out.join(format!(".onnx-rap-partial-{}", std::process::id()));
        let staged = Staged {
            out: out.to_path_buf(),
            staging,
            created_out,
        };
        if let Err(e) = std::fs::create_dir_all(&staged.staging) {
            staged.abandon();
            return Err(bad_input!(
                "{}: cannot write into the output folder: {e}",
                out.display()
            ));
        }
        Ok(staged)
    }

    /// Where to write the file `name` now.
    pub fn path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// Where the file `name` will be once the work is committed.
    pub fn final_path(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// Move every staged file into the output folder (replacing files of the same name).
    pub fn commit(self) -> Result<()> {
        let entries = std::fs::read_dir(&self.staging)
            .map_err(|e| Error::Runtime(format!("{}: cannot list: {e}", self.staging.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                Error::Runtime(format!("{}: cannot list: {e}", self.staging.display()))
            })?;
            let to = self.out.join(entry.file_name());
            std::fs::rename(entry.path(), &to)
                .map_err(|e| Error::Runtime(format!("{}: cannot write: {e}", to.display())))?;
        }
        std::fs::remove_dir(&self.staging)
            .map_err(|e| Error::Runtime(format!("{}: cannot remove: {e}", self.staging.display())))
    }

    /// Remove what was staged, and the output folder if it was created for this work and is
    /// empty.
    pub fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.staging);
        if self.created_out {
            let _ = std::fs::remove_dir(&self.out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_appear_only_on_commit_and_abandon_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("a/b");
        let s = Staged::new(&out).unwrap();
        std::fs::write(s.path("x.txt"), "1").unwrap();
        assert!(!s.final_path("x.txt").exists());
        s.commit().unwrap();
        assert_eq!(std::fs::read_to_string(out.join("x.txt")).unwrap(), "1");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "staging gone");

        // A second run over the same folder fails: the earlier result stays as it was.
        let s = Staged::new(&out).unwrap();
        std::fs::write(s.path("x.txt"), "2").unwrap();
        std::fs::write(s.path("y.txt"), "2").unwrap();
        s.abandon();
        assert_eq!(std::fs::read_to_string(out.join("x.txt")).unwrap(), "1");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);

        // A failed run that created the folder removes it.
        let fresh = tmp.path().join("fresh");
        let s = Staged::new(&fresh).unwrap();
        std::fs::write(s.path("z.txt"), "3").unwrap();
        s.abandon();
        assert!(!fresh.exists());
    }

    #[test]
    fn an_output_path_that_is_a_file_is_bad_input() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("file");
        std::fs::write(&f, "").unwrap();
        let e = Staged::new(&f).err().expect("a file is not a folder");
        assert!(matches!(e, Error::Input(_)), "{e}");
        assert!(
            e.to_string().contains("cannot create the output folder"),
            "{e}"
        );
        assert!(f.is_file(), "the file is left alone");
    }
}
