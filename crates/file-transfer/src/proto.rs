//! The wire format, its limits and the name rule, shared by the server, the
//! client and the tests. No I/O here: only bytes in, values out.
//!
//! # Frames
//!
//! Every message, each way, is one frame: a 4-byte big-endian unsigned
//! length `N` (`1..=`[`MAX_HEADER`]), then `N` bytes of JSON (the header),
//! then, only when the header has a `size` field that announces one, that
//! many bytes of body. The seeds' file-transfer example has the same three
//! parts but packs the length with `struct.pack("i")`, native byte order
//! and signed; here the order is fixed (network order) and the length is
//! capped before anything is allocated for it.
//!
//! JSON rather than a packed binary header: the header is read once per
//! transfer, so its parsing cost does not matter; it can be read in a
//! packet capture and extended (unknown fields are ignored); and serde
//! reports a missing field or an unknown operation in a sentence that can
//! go back to the client as is. A binary layout would be smaller and
//! would make "bad JSON" impossible, at the price of a version field and
//! hand-written error messages.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Largest header, in bytes, either way. A request is under 400 bytes; the
/// cap is what a corrupt or hostile length prefix runs into before the
/// server allocates anything for it.
pub const MAX_HEADER: usize = 4096;

/// Longest file name, in bytes (Linux allows 255; the rest is margin for
/// the temporary name of an upload in progress).
pub const MAX_NAME: usize = 200;

/// Default largest file, in bytes; `ft-server --max-file-size` changes it.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 256 * 1024 * 1024;

/// Size of the length prefix.
pub const PREFIX: usize = 4;

/// What a client asks for. The JSON tag is `op`: `{"op":"list"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Store `size` bytes, sent after the server's go-ahead, under `name`.
    Upload {
        /// The name to publish under; see [`check_name`].
        name: String,
        /// Body length in bytes.
        size: u64,
        /// SHA-256 of the body, 64 lowercase or uppercase hex digits.
        sha256: String,
    },
    /// Send the file `name`: reply header with `size` and `sha256`, then the body.
    Download {
        /// The published name.
        name: String,
    },
    /// Send the listing: reply header with `size`, then one line per file,
    /// `<size> <name>\n`, sorted by name.
    List,
}

/// What the server answers. `ok: false` always carries `error`, and the
/// server closes the connection after sending it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request (or this step of it) succeeded.
    pub ok: bool,
    /// One line saying what was wrong, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Length of the body that follows this header (download, list), or
    /// the length stored (upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 of the file, hex (download, and upload's final reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Reply {
    /// A bare `{"ok":true}`.
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            ..Reply::default()
        }
    }

    /// `{"ok":false,"error":...}`.
    pub fn error(msg: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(msg.into()),
            ..Reply::default()
        }
    }
}

/// One frame header: the length prefix and the JSON, in one buffer so that
/// it leaves in one `write` (two small writes can travel as two segments,
/// and Nagle's algorithm may hold the second back for an acknowledgement).
pub fn encode<T: Serialize>(header: &T) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("headers are plain structs and always serialise");
    let mut frame = Vec::with_capacity(PREFIX + json.len());
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&json);
    frame
}

/// The header length announced by a prefix, if it is in `1..=MAX_HEADER`.
pub fn header_len(prefix: [u8; PREFIX]) -> Result<usize, String> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > MAX_HEADER {
        return Err(format!("header length {len} out of range 1..={MAX_HEADER}"));
    }
    Ok(len)
}

/// Parses a request header, with the reason in one line if it is not one.
pub fn parse_request(json: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(json).map_err(|e| format!("bad header: {e}"))
}

// ANCHOR: name-rule
/// The name rule: 1 to [`MAX_NAME`] bytes, each an ASCII letter, digit,
/// `.`, `_` or `-`, and the first not a `.`.
///
/// An allow-list, not a deny-list of dangerous things: it has no `/` (so
/// no absolute path and no subfolder), no `\`, no NUL, and no name that
/// starts with a dot, which rules out `.` and `..` and hidden files, and
/// leaves every name starting with `.` free for the server's temporary
/// files. A deny-list would have to think of every trick (encodings,
/// control characters, Windows separators) and be right about each; this
/// rule only has to be right about 65 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("bad name: empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("bad name: longer than {MAX_NAME} bytes"));
    }
    if name.starts_with('.') {
        return Err("bad name: starts with '.'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "bad name: {c:?} is not allowed (letters, digits, '.', '_', '-' only)"
        ));
    }
    Ok(())
}
// ANCHOR_END: name-rule

/// Lowercase hex of a digest.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A SHA-256 digest from 64 hex digits, either case.
pub fn parse_sha256(hex: &str) -> Result<[u8; 32], String> {
    let bad = || format!("bad sha256: expected 64 hex digits, got {hex:?}");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// SHA-256 of a whole buffer.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_allow_list() {
        for good in [
            "a",
            "report.pdf",
            "a..b",
            "x-y_z.tar.gz",
            &"n".repeat(MAX_NAME),
        ] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
        let long = "n".repeat(MAX_NAME + 1);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "a\0b",
            ".hidden",
            "a b",
            "é",
            &long,
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn prefix_is_capped_both_ways() {
        assert_eq!(header_len(1u32.to_be_bytes()), Ok(1));
        assert_eq!(
            header_len((MAX_HEADER as u32).to_be_bytes()),
            Ok(MAX_HEADER)
        );
        assert!(header_len(0u32.to_be_bytes()).is_err());
        assert!(header_len((MAX_HEADER as u32 + 1).to_be_bytes()).is_err());
        assert!(header_len(u32::MAX.to_be_bytes()).is_err());
    }

    #[test]
    fn requests_round_trip_and_errors_are_one_line() {
        let r = Request::Upload {
            name: "f".into(),
            size: 3,
            sha256: to_hex(&sha256(b"abc")),
        };
        let frame = encode(&r);
        let len = header_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(parse_request(&frame[4..4 + len]), Ok(r));
        for bad in [
            &b"{"[..],
            b"{\"op\":\"delete\"}",
            b"{\"op\":\"upload\",\"name\":\"f\"}",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(e.starts_with("bad header: ") && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let d = sha256(b"abc");
        assert_eq!(
            to_hex(&d),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_sha256(&to_hex(&d).to_uppercase()), Ok(d));
        assert!(parse_sha256("zz").is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
        assert!(parse_sha256(&"é".repeat(32)).is_err());
    }
}
