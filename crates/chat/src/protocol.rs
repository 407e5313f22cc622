//! The chat's line protocol: the limits, how a raw line is classified,
//! how a command is parsed, and every line the server sends. No I/O here:
//! both implementations read bytes their own way and hand them to
//! [`classify`], then [`Command::parse`].
//!
//! One line per command, ended by `\n` (a `\r` before it is dropped, so
//! telnet and `nc -C` work too). The first word is the command, in any
//! case; names are 1 to [`MAX_NAME`] characters of `A-Z a-z 0-9 _ -`.
//!
//! ```text
//! NICK <name>          take a nickname (unique); members of your rooms see EVENT … renamed …
//! JOIN <room>          enter a room (made on first join); its members, you too, see EVENT … joined
//! LEAVE <room>         leave it (a room with no member is gone)
//! SAY <room> <text>    say something to a room you are in; every member, you too, gets MSG
//! ROOMS                one ROOM <name> <members> line per room, then OK rooms <n>
//! WHO <room>           one MEMBER <room> <nick> line per member, then OK who <room> <n>
//! HELP                 one INFO line listing the commands, then OK help
//! QUIT                 OK bye, then the server closes the connection
//! ```
//!
//! Every line the server sends starts with a word that says what it is:
//! `INFO` (the greeting, help), `OK` (a command succeeded), `ERR` (it did
//! not, or the line was bad), `MSG <room> <nick> <text>` (someone spoke),
//! `EVENT <room> <nick> <what>` (someone joined, left, was renamed or was
//! dropped), `ROOM` and `MEMBER` (list entries, always followed by an
//! `OK`). Every command gets exactly one `OK` or `ERR`, except a
//! successful `SAY`, whose acknowledgement is its own `MSG` in the room's
//! order: an extra `OK` per message would double the traffic of the
//! commonest command and tell the sender nothing the `MSG` does not.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Longest line the server accepts, in bytes, the `\n` not counted. A
/// longer line gets one `ERR` and the connection is closed: the rest of
/// it cannot be told apart from the next command (the alternative, skip
/// to the next `\n`, lets a client make the server read forever).
pub const MAX_LINE: usize = 1024;

/// Longest nickname or room name, in characters.
pub const MAX_NAME: usize = 32;

/// Most lines queued for one member that its writer has not yet written:
/// 256 lines of up to ~1.1 KiB, so at most ~280 KiB per member on top of
/// the kernel's socket buffers.
pub const OUTBOX_CAP: usize = 256;

/// How long a line due to a member with a full queue waits for room
/// before the member is dropped. Not zero: a member that reads at full
/// speed still has a full queue now and then, when its writer has not had
/// the CPU for a moment while talkers sent a burst (seen at once on two
/// busy cores); a scheduling delay is milliseconds, a member that stopped
/// reading stays full for good. Meanwhile the hub waits, so one slow
/// member stalls the chat once, for this long, and is gone.
pub const SLOW_GRACE: Duration = Duration::from_millis(500);

/// One line to send, `\n` included, shared by every member it goes to:
/// a broadcast allocates its text once, not once per member.
pub type Line = Arc<str>;

/// What a line read from a client turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// A line of text, `\r\n` or `\n` removed.
    Text(&'a str),
    /// A line that is not UTF-8: one `ERR`, and the connection goes on.
    NotUtf8,
    /// More than [`MAX_LINE`] bytes without a `\n`: one `ERR`, then close.
    TooLong,
}

/// Classifies what one bounded `read_until(b'\n')` returned: at most
/// `MAX_LINE + 1` bytes (the readers read through `take(MAX_LINE + 1)`),
/// ending in `\n` unless the line was too long or the client's last line
/// had none before EOF (accepted: `printf 'ROOMS' | nc` should work).
pub fn classify(raw: &[u8]) -> Input<'_> {
    let line = match raw.strip_suffix(b"\n") {
        Some(line) => line,
        None if raw.len() > MAX_LINE => return Input::TooLong,
        None => raw,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match std::str::from_utf8(line) {
        Ok(text) => Input::Text(text),
        Err(_) => Input::NotUtf8,
    }
}

/// A parsed command; names are checked, text is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `NICK <name>`
    Nick(&'a str),
    /// `JOIN <room>`
    Join(&'a str),
    /// `LEAVE <room>`
    Leave(&'a str),
    /// `SAY <room> <text>`
    Say(&'a str, &'a str),
    /// `ROOMS`
    Rooms,
    /// `WHO <room>`
    Who(&'a str),
    /// `HELP`
    Help,
    /// `QUIT`
    Quit,
}

/// The commands, as `HELP` and an unknown command list them.
pub const COMMANDS: &str =
    "NICK <name>, JOIN <room>, LEAVE <room>, SAY <room> <text>, ROOMS, WHO <room>, HELP, QUIT";

impl<'a> Command<'a> {
    /// Parses one line of text (not empty: the callers skip blank lines).
    /// The error is the text of the `ERR` line to send back.
    pub fn parse(line: &'a str) -> Result<Command<'a>, String> {
        let line = line.trim_start();
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim_start();
        let upper = word.to_ascii_uppercase();
        let cmd = match upper.as_str() {
            "NICK" => Command::Nick(name(rest, "NICK <name>")?),
            "JOIN" => Command::Join(name(rest, "JOIN <room>")?),
            "LEAVE" => Command::Leave(name(rest, "LEAVE <room>")?),
            "WHO" => Command::Who(name(rest, "WHO <room>")?),
            "SAY" => {
                let (room, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let room = name(room, "SAY <room> <text>")?;
                if text.is_empty() {
                    return Err("usage: SAY <room> <text> (the text is missing)".into());
                }
                Command::Say(room, text)
            }
            "ROOMS" | "HELP" | "QUIT" if !rest.is_empty() => {
                return Err(format!("{upper} takes no argument"));
            }
            "ROOMS" => Command::Rooms,
            "HELP" => Command::Help,
            "QUIT" => Command::Quit,
            _ => {
                // Quoted with `{:?}` so that control characters a client
                // sent come back escaped, not interpreted by its terminal.
                let shown: String = word.chars().take(MAX_NAME).collect();
                return Err(format!("unknown command {shown:?} (try HELP)"));
            }
        };
        Ok(cmd)
    }
}

/// Checks one name argument: exactly one word of allowed characters.
fn name<'a>(arg: &'a str, usage: &str) -> Result<&'a str, String> {
    let arg = arg.trim_end();
    if arg.is_empty() || arg.contains(' ') {
        return Err(format!("usage: {usage}"));
    }
    let ok = arg.len() <= MAX_NAME
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(arg)
    } else {
        Err(format!(
            "bad name: 1 to {MAX_NAME} characters of A-Z a-z 0-9 _ -"
        ))
    }
}

/// Builds one server line from its parts: `prefix` then each part after a
/// space, then `\n`.
pub fn line(prefix: &str, parts: &[&str]) -> Line {
    let mut s =
        String::with_capacity(prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>() + 1);
    s.push_str(prefix);
    for part in parts {
        s.push(' ');
        s.push_str(part);
    }
    s.push('\n');
    Line::from(s)
}

/// An `ERR` line.
pub fn err(text: &str) -> Line {
    line("ERR", &[text])
}

/// An `OK` line with a count at the end (`OK rooms 3`).
pub fn ok_count(parts: &[&str], n: usize) -> Line {
    let mut s = String::from("OK");
    for part in parts {
        s.push(' ');
        s.push_str(part);
    }
    let _ = writeln!(s, " {n}");
    Line::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_lines() {
        assert_eq!(classify(b"ROOMS\n"), Input::Text("ROOMS"));
        assert_eq!(classify(b"ROOMS\r\n"), Input::Text("ROOMS"));
        assert_eq!(classify(b"ROOMS"), Input::Text("ROOMS"));
        assert_eq!(classify(b"\xff\xfe\n"), Input::NotUtf8);
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(classify(&long), Input::TooLong);
        let mut longest = vec![b'a'; MAX_LINE];
        longest.push(b'\n');
        assert!(matches!(classify(&longest), Input::Text(t) if t.len() == MAX_LINE));
    }

    #[test]
    fn parses_commands() {
        assert_eq!(Command::parse("nick bob"), Ok(Command::Nick("bob")));
        assert_eq!(Command::parse("JOIN rust"), Ok(Command::Join("rust")));
        assert_eq!(
            Command::parse("SAY rust hello  there"),
            Ok(Command::Say("rust", "hello  there"))
        );
        assert_eq!(Command::parse("rooms"), Ok(Command::Rooms));
        assert!(Command::parse("SAY rust").is_err());
        assert!(Command::parse("JOIN a b").is_err());
        assert!(Command::parse("JOIN a/b").is_err());
        assert!(Command::parse(&format!("NICK {}", "x".repeat(MAX_NAME + 1))).is_err());
        assert!(Command::parse("QUIT now").is_err());
        let e = Command::parse("DANCE").unwrap_err();
        assert!(e.starts_with("unknown command \"DANCE\""), "{e}");
    }

    #[test]
    fn builds_lines() {
        assert_eq!(
            &*line("MSG", &["r", "bob", "hi there"]),
            "MSG r bob hi there\n"
        );
        assert_eq!(&*ok_count(&["who", "r"], 2), "OK who r 2\n");
    }
}
