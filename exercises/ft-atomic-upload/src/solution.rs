//! SOLUTION of `ft-atomic-upload`: a temporary file in the same folder,
//! removed on every failure, renamed over the real name on success.
//!
//! `rename(2)` within one file system is atomic: anyone opening `dir/name`
//! gets the old file or the new one, never a mixture, and a reader that
//! already has the old one open keeps reading it. Across file systems
//! (`/tmp` is often a tmpfs) `rename` fails with `EXDEV`, and the copy
//! that would replace it is not atomic: hence the same folder. The
//! temporary name starts with `.`, which the name rule refuses, so no
//! upload can collide with it or download it; `O_EXCL` (`create_new`)
//! makes two uploads never share one. The `fsync` before the rename keeps
//! a crash from publishing the name before the data is on disk.
//!
//! Removal is a guard's `Drop`, not a call on each error path: the `?`s
//! and early returns cannot forget it, and neither can a panic. The
//! alternative, `remove_file` in every branch, is how the starter's kind
//! of bug comes back with the next branch someone adds.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Removes the temporary file when dropped, unless it was published.
struct Temp {
    path: PathBuf,
    published: bool,
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Reads `size` bytes from `body` and publishes them as `dir/name` if they
/// are all there and hash to `expected`; otherwise returns why, in one line.
pub fn store_upload(
    dir: &Path,
    name: &str,
    size: u64,
    expected: &[u8; 32],
    body: &mut impl Read,
) -> Result<(), String> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let mut temp = Temp {
        path: dir.join(format!(".upload-{}-{serial}", std::process::id())),
        published: false,
    };
    let store_err = |e: std::io::Error| format!("cannot store {name}: {e}");
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.path)
        .map_err(store_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| format!("receiving {name}: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(store_err)?;
        got += n as u64;
    }
    if got != size {
        return Err(format!(
            "upload of {name} interrupted after {got} of {size} bytes"
        ));
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if &digest != expected {
        return Err(format!("sha256 mismatch for {name}"));
    }
    file.sync_all().map_err(store_err)?;
    fs::rename(&temp.path, dir.join(name)).map_err(store_err)?;
    temp.published = true;
    Ok(())
}
