//! TASK: publish an upload only when it is complete and its digest verified.
//!
//! `store_upload` is called with an upload's body (`size` bytes are
//! announced; the client may vanish before sending them all) and the
//! SHA-256 the client declared. Today it writes straight into
//! `dir/name`. So an upload cut off halfway leaves a truncated file under
//! the real name; one whose digest does not match is refused, but its
//! bytes stay published; and either failure destroys the good file that
//! was there before, since `File::create` truncated it first.
//!
//! Make a failed upload leave the folder exactly as it was: write to a
//! temporary file in the same folder, under a name that no upload can
//! have (`proto::check_name` refuses names starting with `.`), check the
//! length and the digest, and only then `rename(2)` it over `dir/name`;
//! on every failure, remove the temporary file. Why must the temporary
//! file be in the same folder, and not in `/tmp`?
//!
//! Edit this file only. Grade with `just exercise ft-atomic-upload` (or
//! `bash scripts/exercise.sh ft-atomic-upload`).
//!
//! Syscalls: `open(2)`, `write(2)`, `fsync(2)`, `rename(2)`, `unlink(2)`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Reads `size` bytes from `body` and publishes them as `dir/name` if they
/// are all there and hash to `expected`; otherwise returns why, in one line.
pub fn store_upload(
    dir: &Path,
    name: &str,
    size: u64,
    expected: &[u8; 32],
    body: &mut impl Read,
) -> Result<(), String> {
    let mut file = File::create(dir.join(name)).map_err(|e| format!("cannot store {name}: {e}"))?;
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
        file.write_all(&buf[..n])
            .map_err(|e| format!("cannot store {name}: {e}"))?;
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
    Ok(())
}
