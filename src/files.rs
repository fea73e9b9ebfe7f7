//! Every file one snapshot is built from, read once and hashed.
//!
//! Reload compares the digest of what it would build with the digest of what runs, so a no-op
//! event is not a reload and reverting a bad edit recovers. Reading through this type is the
//! only way the loaders touch the file system, which keeps the digest complete.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Files read for one build, keyed by path, in a canonical (sorted) order.
#[derive(Debug, Default, Clone)]
pub struct Files {
    read: BTreeMap<PathBuf, Arc<Vec<u8>>>,
    /// Files that could not be read: not part of the digest, but worth watching.
    unreadable: BTreeSet<PathBuf>,
}

impl Files {
    pub fn new() -> Self {
        Files::default()
    }

    /// Reads `path` (once per build) and remembers its contents for the digest.
    pub fn read(&mut self, path: &Path) -> std::io::Result<Arc<Vec<u8>>> {
        if let Some(data) = self.read.get(path) {
            return Ok(data.clone());
        }
        let data = match std::fs::read(path) {
            Ok(d) => Arc::new(d),
            Err(e) => {
                self.unreadable.insert(path.to_path_buf());
                return Err(e);
            }
        };
        self.read.insert(path.to_path_buf(), data.clone());
        Ok(data)
    }

    /// As [`Files::read`], refusing (`FileTooLarge`) a file over `max` bytes before reading it
    /// (and without reading more than `max + 1` bytes should it grow meanwhile).
    pub fn read_at_most(&mut self, path: &Path, max: usize) -> std::io::Result<Arc<Vec<u8>>> {
        use std::io::Read as _;
        if let Some(data) = self.read.get(path) {
            return Ok(data.clone());
        }
        let too_large = |len: u64| {
            std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("{len} bytes or more"),
            )
        };
        let result = std::fs::File::open(path).and_then(|f| {
            let len = f.metadata()?.len();
            if len > max as u64 {
                return Err(too_large(len));
            }
            let mut data = Vec::new();
            f.take(max as u64 + 1).read_to_end(&mut data)?;
            if data.len() > max {
                return Err(too_large(data.len() as u64));
            }
            Ok(Arc::new(data))
        });
        match result {
            Ok(data) => {
                self.read.insert(path.to_path_buf(), data.clone());
                Ok(data)
            }
            Err(e) => {
                self.unreadable.insert(path.to_path_buf());
                Err(e)
            }
        }
    }

    /// Contents of a file already read in this build.
    pub fn get(&self, path: &Path) -> Option<&Arc<Vec<u8>>> {
        self.read.get(path)
    }

    /// Records a file that was looked at but is absent, so its appearance changes the digest.
    pub fn note_missing(&mut self, path: &Path) {
        self.read
            .entry(path.to_path_buf())
            .or_insert_with(|| Arc::new(Vec::new()));
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.read.keys().map(PathBuf::as_path)
    }

    /// Files whose read failed in this build.
    pub fn missing(&self) -> impl Iterator<Item = &Path> {
        self.unreadable.iter().map(PathBuf::as_path)
    }

    /// SHA-256 over every path and content, in path order, hex encoded.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (path, data) in &self.read {
            let p = path.to_string_lossy();
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
            h.update((data.len() as u64).to_be_bytes());
            h.update(data.as_slice());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
