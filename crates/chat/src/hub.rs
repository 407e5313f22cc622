//! The chat's state and rules, with no I/O and no concurrency: who is
//! connected, under which nickname, in which rooms, and what each command
//! makes the server send to whom. Both implementations drive this one
//! state machine; they differ only in how they keep two threads from
//! driving it at once (a lock, or a single task that owns it) and in what
//! an [`Outbox`] is (a crossbeam or a tokio bounded channel).
//!
//! A line for a member is *offered* to its outbox, which waits for room
//! at most [`SLOW_GRACE`](crate::protocol::SLOW_GRACE): the hub must never
//! wait on one member for long while it holds the state everyone needs.
//! An outbox still full after that marks its member as dropped; once the
//! command that filled it is done, the member is removed from every room
//! (the rooms are told `EVENT <room> <nick> dropped (not reading)`) and
//! its connection is cut.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::protocol::{self, COMMANDS, Command, Input, Line, MAX_LINE};

/// A connection's number, given by the accept loop.
pub type MemberId = u64;

/// Where the hub puts the lines for one member; the writer at the other
/// end writes them to the socket.
pub trait Outbox {
    /// Queues `line`, waiting at most
    /// [`SLOW_GRACE`](crate::protocol::SLOW_GRACE) for room. `false` only
    /// if the queue is still full; a queue whose writer is gone (the
    /// client vanished) takes the line and discards it, as the reader
    /// will report the departure.
    fn offer(&self, line: &Line) -> bool;
    /// Ends the connection now, lines still queued included: the member
    /// was dropped for not reading, and a flush could wait forever.
    fn cut(&self);
    /// Stops reading from the connection, so that its reader ends; what is
    /// queued is still written (after `QUIT`, an overlong line, shutdown).
    fn stop_reading(&self);
}

struct Member<O> {
    nick: String,
    rooms: BTreeSet<String>,
    out: O,
    /// Its outbox was full: skip it until it is removed.
    dropping: bool,
}

/// The whole chat: members, rooms, nicknames.
pub struct Hub<O> {
    members: HashMap<MemberId, Member<O>>,
    /// Room name to member ids; a room exists while it has a member.
    rooms: BTreeMap<String, BTreeSet<MemberId>>,
    nicks: HashSet<String>,
    /// Members whose outbox was found full, to remove once the current
    /// command is done (removing one mid-broadcast would change the room
    /// being iterated).
    dropped: Vec<MemberId>,
}

impl<O: Outbox> Default for Hub<O> {
    fn default() -> Self {
        Hub {
            members: HashMap::new(),
            rooms: BTreeMap::new(),
            nicks: HashSet::new(),
            dropped: Vec::new(),
        }
    }
}

impl<O: Outbox> Hub<O> {
    /// An empty chat.
    pub fn new() -> Hub<O> {
        Hub::default()
    }

    /// Members connected.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True with no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A new connection: it gets the nickname `guest<id>` (or the next free
    /// `guest<id>-<n>` if someone took that) and the greeting.
    pub fn connect(&mut self, id: MemberId, out: O) {
        let mut nick = format!("guest{id}");
        let mut n = 1;
        while self.nicks.contains(&nick) {
            nick = format!("guest{id}-{n}");
            n += 1;
        }
        self.nicks.insert(nick.clone());
        let greeting = format!("welcome, you are {nick}; commands: {COMMANDS}");
        self.members.insert(
            id,
            Member {
                nick,
                rooms: BTreeSet::new(),
                out,
                dropping: false,
            },
        );
        self.send(id, &protocol::line("INFO", &[&greeting]));
        self.settle();
    }

    /// One line from member `id`. Returns whether `id` is still a member
    /// afterwards (false after `QUIT`, an overlong line, or a drop): its
    /// reader stops then. Lines from an id that is no longer a member are
    /// ignored.
    pub fn input(&mut self, id: MemberId, input: Input<'_>) -> bool {
        if !self.members.contains_key(&id) {
            return false;
        }
        match input {
            // A blank line (Enter pressed in `nc`) is not worth an error.
            Input::Text(text) if text.trim().is_empty() => {}
            Input::Text(text) => match Command::parse(text) {
                Ok(cmd) => self.command(id, cmd),
                Err(e) => self.send(id, &protocol::err(&e)),
            },
            Input::NotUtf8 => self.send(id, &protocol::err("line is not valid UTF-8")),
            Input::TooLong => {
                let e = format!("line longer than {MAX_LINE} bytes; closing");
                self.send(id, &protocol::err(&e));
                self.close(id);
            }
        }
        self.settle();
        self.members.contains_key(&id)
    }

    /// Member `id`'s connection ended (EOF, reset, or its reader stopped):
    /// its rooms are told it left. Nothing if it was already removed.
    pub fn disconnect(&mut self, id: MemberId) {
        drop(self.remove(id, "left"));
        self.settle();
    }

    /// Server shutdown: every member is told, its reader stopped, and the
    /// hub emptied; each writer still writes what was queued.
    pub fn close_all(&mut self) {
        let bye = protocol::line("INFO", &["server shutting down"]);
        for member in self.members.values() {
            member.out.offer(&bye);
            member.out.stop_reading();
        }
        self.members.clear();
        self.rooms.clear();
        self.nicks.clear();
        self.dropped.clear();
    }

    fn command(&mut self, id: MemberId, cmd: Command<'_>) {
        let me = &self.members[&id];
        let nick = me.nick.clone();
        match cmd {
            Command::Nick(new) if new == nick => self.send(id, &protocol::line("OK nick", &[new])),
            Command::Nick(new) if self.nicks.contains(new) => {
                self.send(id, &protocol::err(&format!("nick {new} is taken")));
            }
            Command::Nick(new) => {
                self.nicks.remove(&nick);
                self.nicks.insert(new.to_owned());
                let rooms: Vec<String> = me.rooms.iter().cloned().collect();
                if let Some(m) = self.members.get_mut(&id) {
                    m.nick = new.to_owned();
                }
                for room in rooms {
                    let event = protocol::line("EVENT", &[&room, &nick, "renamed", new]);
                    self.broadcast(&room, &event);
                }
                self.send(id, &protocol::line("OK nick", &[new]));
            }
            Command::Join(room) if me.rooms.contains(room) => {
                self.send(id, &protocol::err(&format!("already in {room}")));
            }
            Command::Join(room) => {
                self.rooms.entry(room.to_owned()).or_default().insert(id);
                if let Some(m) = self.members.get_mut(&id) {
                    m.rooms.insert(room.to_owned());
                }
                self.broadcast(room, &protocol::line("EVENT", &[room, &nick, "joined"]));
                self.send(id, &protocol::line("OK join", &[room]));
            }
            Command::Leave(room) | Command::Say(room, _) if !me.rooms.contains(room) => {
                self.send(
                    id,
                    &protocol::err(&format!("not in {room} (JOIN {room} first)")),
                );
            }
            Command::Leave(room) => {
                // Told before leaving, so the leaver sees its own departure
                // in the room's order, as the others do.
                self.broadcast(room, &protocol::line("EVENT", &[room, &nick, "left"]));
                self.leave_room(id, room);
                self.send(id, &protocol::line("OK leave", &[room]));
            }
            Command::Say(room, text) => {
                self.broadcast(room, &protocol::line("MSG", &[room, &nick, text]));
            }
            Command::Rooms => {
                let list: Vec<Line> = self
                    .rooms
                    .iter()
                    .map(|(name, ids)| protocol::line("ROOM", &[name, &ids.len().to_string()]))
                    .collect();
                for l in &list {
                    self.send(id, l);
                }
                self.send(id, &protocol::ok_count(&["rooms"], list.len()));
            }
            Command::Who(room) => match self.rooms.get(room) {
                None => self.send(id, &protocol::err(&format!("no room {room}"))),
                Some(ids) => {
                    let mut nicks: Vec<&str> =
                        ids.iter().map(|m| self.members[m].nick.as_str()).collect();
                    nicks.sort_unstable();
                    let list: Vec<Line> = nicks
                        .iter()
                        .map(|n| protocol::line("MEMBER", &[room, n]))
                        .collect();
                    for l in &list {
                        self.send(id, l);
                    }
                    self.send(id, &protocol::ok_count(&["who", room], list.len()));
                }
            },
            Command::Help => {
                self.send(id, &protocol::line("INFO commands:", &[COMMANDS]));
                self.send(id, &protocol::line("OK help", &[]));
            }
            Command::Quit => {
                self.send(id, &protocol::line("OK bye", &[]));
                self.close(id);
            }
        }
    }

    /// Offers `line` to member `id`; a full outbox marks it dropped.
    fn send(&mut self, id: MemberId, line: &Line) {
        deliver(&mut self.members, &mut self.dropped, id, line);
    }

    /// Offers `line` to every member of `room`, in the one order in which
    /// the hub handles commands: that is the room's total order.
    fn broadcast(&mut self, room: &str, line: &Line) {
        if let Some(ids) = self.rooms.get(room) {
            for &id in ids {
                deliver(&mut self.members, &mut self.dropped, id, line);
            }
        }
    }

    /// Takes `id` out of `room`, and the room away once empty.
    fn leave_room(&mut self, id: MemberId, room: &str) {
        if let Some(ids) = self.rooms.get_mut(room) {
            ids.remove(&id);
            if ids.is_empty() {
                self.rooms.remove(room);
            }
        }
        if let Some(m) = self.members.get_mut(&id) {
            m.rooms.remove(room);
        }
    }

    /// Removes `id`, telling each of its rooms `EVENT <room> <nick> <how>`.
    /// Returns the member, whose outbox goes when it is dropped.
    fn remove(&mut self, id: MemberId, how: &str) -> Option<Member<O>> {
        let member = self.members.remove(&id)?;
        self.nicks.remove(&member.nick);
        for room in &member.rooms {
            self.leave_room(id, room);
            self.broadcast(room, &protocol::line("EVENT", &[room, &member.nick, how]));
        }
        Some(member)
    }

    /// `QUIT` or an overlong line: the member leaves, its reader stops,
    /// its writer flushes the last reply.
    fn close(&mut self, id: MemberId) {
        if let Some(member) = self.remove(id, "left") {
            member.out.stop_reading();
        }
    }

    /// Removes the members found with a full outbox. Telling their rooms
    /// may fill another member's outbox, which then joins the list.
    fn settle(&mut self) {
        while let Some(id) = self.dropped.pop() {
            if let Some(member) = self.remove(id, "dropped (not reading)") {
                member.out.cut();
            }
        }
    }
}

/// [`Hub::send`] on the fields it needs, so that [`Hub::broadcast`] can
/// iterate a room while delivering.
fn deliver<O: Outbox>(
    members: &mut HashMap<MemberId, Member<O>>,
    dropped: &mut Vec<MemberId>,
    id: MemberId,
    line: &Line,
) {
    // rust-version 1.85 has no let chains.
    if let Some(m) = members.get_mut(&id) {
        if !m.dropping && !m.out.offer(line) {
            m.dropping = true;
            dropped.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use super::*;

    /// An outbox of at most `cap` lines, kept for inspection.
    #[derive(Clone)]
    struct Mem {
        lines: Rc<RefCell<Vec<String>>>,
        cap: usize,
        cut: Rc<Cell<bool>>,
    }

    impl Mem {
        fn new(cap: usize) -> Mem {
            Mem {
                lines: Rc::default(),
                cap,
                cut: Rc::default(),
            }
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.lines.borrow_mut())
        }
    }

    impl Outbox for Mem {
        fn offer(&self, line: &Line) -> bool {
            let mut lines = self.lines.borrow_mut();
            if lines.len() >= self.cap {
                return false;
            }
            lines.push(line.trim_end().to_owned());
            true
        }
        fn cut(&self) {
            self.cut.set(true);
        }
        fn stop_reading(&self) {}
    }

    fn text(hub: &mut Hub<Mem>, id: MemberId, line: &str) -> bool {
        hub.input(id, Input::Text(line))
    }

    #[test]
    fn a_full_outbox_drops_its_member_with_a_notice() {
        let mut hub = Hub::new();
        let (a, slow) = (Mem::new(1000), Mem::new(4));
        hub.connect(1, a.clone());
        hub.connect(2, slow.clone());
        text(&mut hub, 1, "JOIN r");
        text(&mut hub, 2, "JOIN r");
        for i in 0..3 {
            text(&mut hub, 1, &format!("SAY r m{i}"));
        }
        assert!(slow.cut.get(), "the member with a full outbox was not cut");
        let seen = a.take();
        assert!(
            seen.contains(&"EVENT r guest2 dropped (not reading)".to_owned()),
            "{seen:?}"
        );
        assert!(
            !text(&mut hub, 2, "SAY r late"),
            "a dropped member still counts"
        );
        assert_eq!(hub.len(), 1);
    }

    #[test]
    fn nick_join_say_leave() {
        let mut hub = Hub::new();
        let a = Mem::new(100);
        hub.connect(1, a.clone());
        text(&mut hub, 1, "NICK ann");
        text(&mut hub, 1, "SAY r hi");
        text(&mut hub, 1, "JOIN r");
        text(&mut hub, 1, "SAY r hi there");
        text(&mut hub, 1, "LEAVE r");
        text(&mut hub, 1, "ROOMS");
        assert!(!text(&mut hub, 1, "QUIT"));
        let seen = a.take();
        assert_eq!(
            &seen[1..],
            [
                "OK nick ann",
                "ERR not in r (JOIN r first)",
                "EVENT r ann joined",
                "OK join r",
                "MSG r ann hi there",
                "EVENT r ann left",
                "OK leave r",
                "OK rooms 0",
                "OK bye",
            ]
        );
    }
}
