//! The bounds an app file is read within. Real network security configs and Info.plists are a
//! few kilobytes and a handful of levels deep; these limits are far above that and far below
//! what could exhaust the stack, memory or time of a running proxy on reload.

/// Largest app file read, in bytes (1 MiB).
pub const MAX_APP_FILE_BYTES: usize = 1024 * 1024;
/// Deepest nesting of XML elements or of plist arrays and dictionaries.
pub const MAX_DEPTH: usize = 64;
/// Most XML nodes, or plist values a file may expand to (a binary plist's shared references
/// counted each time they are used, dictionary keys included).
pub const MAX_OBJECTS: usize = 100_000;

/// Which bound an app file is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppFileLimit {
    Size,
    Depth,
    Objects,
}

impl AppFileLimit {
    /// The limit as the error states it.
    pub fn describe(self) -> String {
        match self {
            AppFileLimit::Size => format!("1 MiB ({MAX_APP_FILE_BYTES} bytes)"),
            AppFileLimit::Depth => format!("{MAX_DEPTH} levels of nesting"),
            AppFileLimit::Objects => format!("{MAX_OBJECTS} values"),
        }
    }
}

/// Counts nesting and values of a stream, for readers that only say open, close and value.
#[derive(Default)]
pub struct Bounds {
    depth: usize,
    objects: usize,
}

impl Bounds {
    /// One value; `opens` if it starts a container.
    pub fn value(&mut self, opens: bool) -> Result<(), super::AppFileError> {
        self.objects += 1;
        if self.objects > MAX_OBJECTS {
            return Err(super::AppFileError::over(
                AppFileLimit::Objects,
                format!("more than {MAX_OBJECTS} values"),
            ));
        }
        if opens {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(super::AppFileError::over(
                    AppFileLimit::Depth,
                    format!("nested more than {MAX_DEPTH} levels deep"),
                ));
            }
        }
        Ok(())
    }

    pub fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}
