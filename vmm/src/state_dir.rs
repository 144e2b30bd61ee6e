//! Where `vmm serve` keeps its persistent domain: one `NAME.xml` file in the state directory,
//! as libvirt keeps `/etc/libvirt/qemu/NAME.xml`. A file is replaced atomically (written to a
//! temporary name, synced, renamed over the old one, the directory synced), so a crash at
//! any point leaves either the old definition or the new one, never half a file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::describe_io_error;

/// Files being written; what a crash mid-write leaves, removed at the next start.
const TEMP_SUFFIX: &str = ".xml.tmp";

pub struct StateDir {
    dir: PathBuf,
}

/// The definition found at start-up: the domain's name (its file's stem) and its XML.
pub struct StoredDomain {
    pub name: String,
    pub xml: String,
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> String {
    format!("{what} {}: {}", path.display(), describe_io_error(e))
}

impl StateDir {
    /// Opens (creating it if needed) the directory.
    pub fn open(dir: &Path) -> Result<StateDir, String> {
        fs::create_dir_all(dir).map_err(|e| io_error("--state-dir", dir, &e))?;
        if !dir.is_dir() {
            return Err(format!("--state-dir {}: not a directory", dir.display()));
        }
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.xml"))
    }

    /// The stored definition, if any. Leftovers of an interrupted write are removed; more
    /// than one definition is refused (this host runs one domain).
    pub fn load(&self) -> Result<Option<StoredDomain>, String> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| io_error("--state-dir", &self.dir, &e))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| io_error("--state-dir", &self.dir, &e))?
                .path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if file_name.ends_with(TEMP_SUFFIX) {
                log::warn!("removing {}, left by an interrupted write", path.display());
                let _ = fs::remove_file(&path);
            } else if let Some(name) = file_name.strip_suffix(".xml") {
                found.push((name.to_string(), path.clone()));
            }
        }
        match found.len() {
            0 => Ok(None),
            1 => {
                let (name, path) = found.remove(0);
                let xml =
                    fs::read_to_string(&path).map_err(|e| io_error("cannot read", &path, &e))?;
                Ok(Some(StoredDomain { name, xml }))
            }
            _ => Err(format!(
                "--state-dir {}: holds {} domain definitions; this host runs one domain",
                self.dir.display(),
                found.len()
            )),
        }
    }

    /// Stores `xml` as the definition of `name`, replacing the old one atomically.
    pub fn store(&self, name: &str, xml: &str) -> Result<(), String> {
        let temp = self.dir.join(format!(".{name}{TEMP_SUFFIX}"));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)?;
            file.write_all(xml.as_bytes())?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_error("cannot write", &temp, &e));
        }
        let target = self.file(name);
        fs::rename(&temp, &target).map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_error("cannot rename into", &target, &e)
        })?;
        self.sync()
    }

    /// Removes the definition of `name`.
    pub fn remove(&self, name: &str) -> Result<(), String> {
        let target = self.file(name);
        match fs::remove_file(&target) {
            Ok(()) => self.sync(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("cannot remove", &target, &e)),
        }
    }

    /// Makes a rename or removal durable: the directory's entry is what changed.
    fn sync(&self) -> Result<(), String> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("cannot sync", &self.dir, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vmm-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn store_load_replace_remove() {
        let dir = temp_dir("cycle");
        let state = StateDir::open(&dir).unwrap();
        assert!(state.load().unwrap().is_none());
        state.store("web", "<domain>1</domain>").unwrap();
        state.store("web", "<domain>2</domain>").unwrap();
        let stored = state.load().unwrap().unwrap();
        assert_eq!(
            (stored.name.as_str(), stored.xml.as_str()),
            ("web", "<domain>2</domain>")
        );
        state.remove("web").unwrap();
        state.remove("web").unwrap();
        assert!(state.load().unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leftovers_are_removed_and_two_definitions_refused() {
        let dir = temp_dir("leftovers");
        let state = StateDir::open(&dir).unwrap();
        fs::write(dir.join(".web.xml.tmp"), "<dom").unwrap();
        state.store("web", "<domain/>").unwrap();
        assert_eq!(state.load().unwrap().unwrap().name, "web");
        assert!(!dir.join(".web.xml.tmp").exists());
        fs::write(dir.join("db.xml"), "<domain/>").unwrap();
        let err = state.load().err().unwrap();
        assert!(err.contains("this host runs one domain"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
