//! Free space of the file system holding a path (statvfs).

use std::path::Path;

/// Sizes in bytes, as an unprivileged process sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub total: u64,
    /// Available to unprivileged users (`f_bavail`), which is what the service gets.
    pub available: u64,
}

impl FsSpace {
    /// Percent in use, 0–100.
    pub fn used_percent(&self) -> u8 {
        if self.total == 0 {
            return 0;
        }
        let used = self.total.saturating_sub(self.available);
        u8::try_from(used.saturating_mul(100) / self.total).unwrap_or(100)
    }
}

pub fn fs_space(path: &Path) -> std::io::Result<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte")
    })?;
    // SAFETY: `statvfs` is plain old data (all-zero is valid) and `c_path` is a valid
    // NUL-terminated string that outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FsSpace {
        total: (st.f_blocks as u64).saturating_mul(frsize),
        available: (st.f_bavail as u64).saturating_mul(frsize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dir_has_a_size_and_missing_path_errors() {
        let space = fs_space(&std::env::temp_dir()).unwrap();
        assert!(space.total > 0 && space.available <= space.total);
        assert!(fs_space(Path::new("/no/such/dir/here")).is_err());
    }

    #[test]
    fn used_percent_is_bounded() {
        assert_eq!(
            FsSpace {
                total: 0,
                available: 0
            }
            .used_percent(),
            0
        );
        assert_eq!(
            FsSpace {
                total: 100,
                available: 10
            }
            .used_percent(),
            90
        );
        assert_eq!(
            FsSpace {
                total: 100,
                available: 0
            }
            .used_percent(),
            100
        );
    }
}
