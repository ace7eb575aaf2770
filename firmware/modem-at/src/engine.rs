//! The AT engine: one command on the wire at a time from a queue, each with
//! its own timeout; lines from the modem sorted into the command's echo
//! (dropped), its information text, its final result code, and unsolicited
//! result codes (URCs) interleaved anywhere. Garbage (a line too long, bytes
//! that are no text) is dropped up to the next line end; after a timeout the
//! engine resynchronises with a bare `AT` before the next command; if even
//! that goes unanswered, every waiting command fails at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Longest line kept; longer ones are garbage.
const MAX_LINE: usize = 1024;

/// How long the resynchronising `AT` may take.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// Identifies a queued command in its [`Event::Done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// Why a command did not end in `OK`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtError {
    /// `ERROR`.
    #[error("ERROR")]
    Error,
    /// `+CME ERROR: <n>` (equipment) — numeric or verbose.
    #[error("+CME ERROR: {0}")]
    Cme(String),
    /// `+CMS ERROR: <n>` (messaging).
    #[error("+CMS ERROR: {0}")]
    Cms(String),
    /// `NO CARRIER`, `BUSY`, `NO ANSWER`, `NO DIALTONE`.
    #[error("{0}")]
    Call(String),
    /// No final result code in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl AtError {
    /// The CME error number, if this is a numeric `+CME ERROR`.
    pub fn cme_code(&self) -> Option<u16> {
        match self {
            AtError::Cme(c) => c.trim().parse().ok(),
            _ => None,
        }
    }
}

/// What the engine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A command finished: its information lines, or why it failed.
    Done {
        /// The command.
        id: CommandId,
        /// What it was (e.g. `AT+CSQ`).
        command: String,
        /// Information text lines (echo and result code removed), or error.
        result: Result<Vec<String>, AtError>,
    },
    /// An unsolicited result code (a line nobody asked for).
    Urc(String),
}

#[derive(Debug)]
struct Queued {
    id: CommandId,
    text: String,
    timeout: Duration,
    /// Response lines start with this (`+CSQ:` for `AT+CSQ`); other `+…:`
    /// lines while it runs are URCs.
    prefix: Option<String>,
}

#[derive(Debug)]
struct InFlight {
    cmd: Queued,
    deadline: Instant,
    lines: Vec<String>,
    /// The resynchronising `AT`, not a user command.
    resync: bool,
}

/// The engine. Feed it the port's bytes with [`AtEngine::handle_input`],
/// write what [`AtEngine::poll_transmit`] gives, call
/// [`AtEngine::handle_timeout`] at [`AtEngine::poll_timeout`], and take
/// [`AtEngine::poll_event`].
#[derive(Debug, Default)]
pub struct AtEngine {
    queue: VecDeque<Queued>,
    current: Option<InFlight>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    partial: Vec<u8>,
    /// Dropping bytes until the next line end (a line grew too long).
    skipping: bool,
    next_id: u64,
    need_resync: bool,
    /// Lines dropped as garbage (for diagnostics).
    pub garbage_lines: u64,
}

/// The response prefix of a command: `AT+CSQ` → `+CSQ:`, `AT+CREG?` →
/// `+CREG:`, `AT+CGDCONT=1,…` → `+CGDCONT:`; none for `ATE0`, `AT`.
fn response_prefix(cmd: &str) -> Option<String> {
    let body = cmd.get(2..)?;
    let first = body.chars().next()?;
    if first != '+' && first != '^' && first != '$' {
        return None;
    }
    let end = body.find(['?', '=', ';']).unwrap_or(body.len());
    Some(format!("{}:", &body[..end]))
}

impl AtEngine {
    /// An idle engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `command` (e.g. `AT+CSQ`, without the trailing CR).
    pub fn send(&mut self, command: &str, timeout: Duration, now: Instant) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        self.queue.push_back(Queued {
            id,
            text: command.to_string(),
            timeout,
            prefix: response_prefix(command),
        });
        self.start_next(now);
        id
    }

    /// Commands waiting or running.
    pub fn pending(&self) -> usize {
        self.queue.len() + usize::from(self.current.as_ref().is_some_and(|c| !c.resync))
    }

    /// Drops every queued and running command (the port went away); each
    /// is reported as timed out.
    pub fn reset(&mut self) {
        let mut all: Vec<Queued> = self
            .current
            .take()
            .into_iter()
            .filter(|c| !c.resync)
            .map(|c| c.cmd)
            .collect();
        all.extend(self.queue.drain(..));
        for c in all {
            self.events.push_back(Event::Done {
                id: c.id,
                command: c.text,
                result: Err(AtError::Timeout(Duration::ZERO)),
            });
        }
        self.partial.clear();
        self.skipping = false;
        self.out.clear();
        // A fresh port holds no late answers.
        self.need_resync = false;
    }

    /// Bytes read from the port.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        for &b in bytes {
            if b == b'\r' || b == b'\n' {
                if self.skipping {
                    self.skipping = false;
                    self.partial.clear();
                    continue;
                }
                if !self.partial.is_empty() {
                    let raw = std::mem::take(&mut self.partial);
                    match String::from_utf8(raw) {
                        Ok(line) => self.line(line.trim().to_string(), now),
                        Err(_) => self.garbage_lines += 1,
                    }
                }
            } else if !self.skipping {
                self.partial.push(b);
                if self.partial.len() > MAX_LINE {
                    self.partial.clear();
                    self.skipping = true;
                    self.garbage_lines += 1;
                }
            }
        }
        self.start_next(now);
    }

    /// When [`Self::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current.as_ref().map(|c| c.deadline)
    }

    /// Ends a command that has not answered in time.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(c) = self.current.take_if(|c| now >= c.deadline) {
            if c.resync {
                // Not even a bare AT answers: the modem is gone for now;
                // every waiting command fails rather than waits forever.
                for q in self.queue.drain(..) {
                    self.events.push_back(Event::Done {
                        id: q.id,
                        command: q.text,
                        result: Err(AtError::Timeout(Duration::ZERO)),
                    });
                }
            } else {
                self.events.push_back(Event::Done {
                    id: c.cmd.id,
                    command: c.cmd.text,
                    result: Err(AtError::Timeout(c.cmd.timeout)),
                });
            }
            // A late answer must not be taken for the next command's.
            self.need_resync = true;
            self.partial.clear();
        }
        self.start_next(now);
    }

    /// Bytes to write to the port.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn start_next(&mut self, now: Instant) {
        if self.current.is_some() {
            return;
        }
        let (cmd, resync) = if self.need_resync {
            if self.queue.is_empty() {
                return;
            }
            self.need_resync = false;
            (
                Queued {
                    id: CommandId(u64::MAX),
                    text: "AT".into(),
                    timeout: RESYNC_TIMEOUT,
                    prefix: None,
                },
                true,
            )
        } else {
            let Some(cmd) = self.queue.pop_front() else {
                return;
            };
            (cmd, false)
        };
        self.out.push_back(format!("{}\r", cmd.text).into_bytes());
        self.current = Some(InFlight {
            deadline: now + cmd.timeout,
            cmd,
            lines: Vec::new(),
            resync,
        });
    }

    fn line(&mut self, line: String, now: Instant) {
        if line.is_empty() {
            return;
        }
        let Some(cur) = self.current.as_mut() else {
            self.events.push_back(Event::Urc(line));
            return;
        };
        // The modem echoes the command (until ATE0).
        if line == cur.cmd.text {
            return;
        }
        let fin: Option<Result<(), AtError>> = match line.as_str() {
            "OK" => Some(Ok(())),
            "ERROR" => Some(Err(AtError::Error)),
            "NO CARRIER" | "BUSY" | "NO ANSWER" | "NO DIALTONE" => {
                Some(Err(AtError::Call(line.clone())))
            }
            l => l
                .strip_prefix("+CME ERROR:")
                .map(|c| Err(AtError::Cme(c.trim().to_string())))
                .or_else(|| {
                    l.strip_prefix("+CMS ERROR:")
                        .map(|c| Err(AtError::Cms(c.trim().to_string())))
                }),
        };
        if let Some(fin) = fin {
            if let Some(c) = self.current.take()
                && !c.resync
            {
                self.events.push_back(Event::Done {
                    id: c.cmd.id,
                    command: c.cmd.text,
                    result: fin.map(|()| c.lines),
                });
            }
            self.start_next(now);
            return;
        }
        if is_urc(&line, cur.cmd.prefix.as_deref()) {
            self.events.push_back(Event::Urc(line));
        } else {
            cur.lines.push(line);
        }
    }
}

/// Whether `line`, arriving while a command with response `prefix` runs,
/// is unsolicited: a `+…:`/`^…:` line of another command, or one of the
/// bare URCs modems send at any time.
fn is_urc(line: &str, prefix: Option<&str>) -> bool {
    const BARE: [&str; 5] = ["RING", "RDY", "PB DONE", "SMS DONE", "^SYSSTART"];
    if BARE.contains(&line) {
        return true;
    }
    let tagged = (line.starts_with('+') || line.starts_with('^')) && line.contains(':');
    match prefix {
        Some(p) => tagged && !line.starts_with(p),
        None => tagged,
    }
}
