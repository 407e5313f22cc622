//! Resident memory of a process tree, read from `/proc` (Linux only).
//!
//! A process-based model (fork per client, prefork) spreads its memory over
//! children, so the server's footprint is the sum over the process and all
//! its descendants. Descendants are found from the parent pid in
//! `/proc/<pid>/stat`; the RSS comes from `VmRSS` in `/proc/<pid>/status`.
//! Shared pages are counted once per process, which overstates a forked
//! tree; for "did it grow" questions that bias cancels out.

use std::collections::HashMap;
use std::fs;

/// The pids of `root` and all its descendants, `root` first.
pub fn tree_pids(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // Processes come and go while we scan: a vanished one is skipped.
            if let Some(ppid) = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_of(&stat))
            {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        if let Some(kids) = children.get(&tree[next]) {
            tree.extend(kids);
        }
        next += 1;
    }
    tree
}

/// The parent pid from the text of `/proc/<pid>/stat`. The command name,
/// second field, is in parentheses and may itself hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parent_of(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    // state, then ppid
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `VmRSS` of one process in bytes; `None` if it is gone, or has no user
/// memory (a zombie).
pub fn process_rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sum of `VmRSS` over `pid` and its descendants, in bytes; `None` if `pid`
/// itself cannot be read.
pub fn tree_rss_bytes(pid: u32) -> Option<u64> {
    let own = process_rss_bytes(pid)?;
    let rest: u64 = tree_pids(pid)
        .into_iter()
        .skip(1)
        .filter_map(process_rss_bytes)
        .sum();
    Some(own + rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn parent_field_survives_odd_command_names() {
        assert_eq!(parent_of("42 (a) b (c)) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn a_child_is_part_of_the_tree() {
        let me = std::process::id();
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning sleep");
        let tree = tree_pids(me);
        let child_rss = process_rss_bytes(child.id());
        let child_tree_rss = tree_rss_bytes(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree[0], me);
        assert!(tree.contains(&child.id()), "{tree:?} lacks {}", child.id());
        assert!(child_rss.is_some_and(|b| b > 0), "{child_rss:?}");
        // `sleep` may still be loading its libraries, so the two reads need
        // not agree to the page; both must see it.
        assert!(child_tree_rss.is_some_and(|b| b > 0), "{child_tree_rss:?}");
        assert_eq!(process_rss_bytes(u32::MAX), None);
    }
}
