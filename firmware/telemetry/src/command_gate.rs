//! Which command messages run. MQTT delivers a command more than once or
//! late by design: a retained one again at every subscription, a QoS 1 one
//! again after a lost acknowledgement, one published while the box was
//! away when it comes back (a persistent session). A fleet command must
//! run once, and only while it still means what the operator meant. So a
//! command runs only if it was not retained, carries `"at"` (when it was
//! sent, Unix seconds) no more than [`MAX_AGE`] from the box's clock, and
//! has an id not among the last [`REMEMBERED_IDS`] that ran. Every refusal
//! is answered on `…/cmd/reply`. Pure: the clock comes in.
//!
//! A box that has not set its clock yet (no RTC on a Pi; before the
//! network time arrives it reads an old date) cannot judge age: until its
//! clock is past [`CLOCK_FLOOR`] it takes `at` on trust and says so in the
//! log; retention and repeats are refused all the same.

use std::collections::VecDeque;

use serde_json::Value;

use crate::command::{Command, CommandReply, parse};

/// How far a command's `at` may be from the box's clock (either way).
pub const MAX_AGE: f64 = 60.0;

/// Ids of commands that ran, remembered to refuse a repeat.
pub const REMEMBERED_IDS: usize = 256;

/// A clock before this (2026-01-01T00:00:00Z) has not been set.
pub const CLOCK_FLOOR: f64 = 1_767_225_600.0;

/// The gate's memory.
#[derive(Debug, Default)]
pub struct CommandGate {
    ran: VecDeque<String>,
}

/// What the gate lets through.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The correlation id.
    pub id: String,
    /// The command.
    pub cmd: Command,
    /// Its age could not be judged (the box's clock is not set).
    pub age_unchecked: bool,
}

impl CommandGate {
    /// Decides on one message on `…/cmd`: `retained` is the message's
    /// retain flag, `now` the box's clock (Unix seconds).
    pub fn admit(
        &mut self,
        retained: bool,
        payload: &[u8],
        now: f64,
    ) -> Result<Admitted, CommandReply> {
        let (id, cmd) = parse(payload)?;
        let fail = |why: String| CommandReply::error(&id, why);
        if retained {
            return Err(fail(
                "retained commands are refused (they would run again at every connection); publish with retain = false".into(),
            ));
        }
        let at = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|v| v.get("at").and_then(Value::as_f64));
        let Some(at) = at else {
            return Err(fail(
                "\"at\" (when the command was sent, Unix seconds) is missing".into(),
            ));
        };
        let age_unchecked = now < CLOCK_FLOOR;
        if !age_unchecked {
            let age = now - at;
            if age > MAX_AGE {
                return Err(fail(format!(
                    "sent {age:.0} s ago; commands older than {MAX_AGE:.0} s are refused (queued while the box was away?)"
                )));
            }
            if -age > MAX_AGE {
                return Err(fail(format!(
                    "sent {:.0} s in the box's future; is the sender's clock right?",
                    -age
                )));
            }
        }
        if self.ran.iter().any(|r| *r == id) {
            return Err(fail(format!(
                "command id {id:?} already ran; a repeat is not carried out"
            )));
        }
        if self.ran.len() >= REMEMBERED_IDS {
            self.ran.pop_front();
        }
        self.ran.push_back(id.clone());
        Ok(Admitted {
            id,
            cmd,
            age_unchecked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_800_000_000.0;

    fn cmd(id: &str, at: f64) -> Vec<u8> {
        format!(r#"{{"id":"{id}","cmd":"approve","at":{at}}}"#).into_bytes()
    }

    fn error(r: Result<Admitted, CommandReply>) -> String {
        match r {
            Err(r) => r.error.unwrap_or_default(),
            Ok(a) => panic!("ran {a:?}"),
        }
    }

    #[test]
    fn a_fresh_command_runs_once() {
        let mut g = CommandGate::default();
        let a = g.admit(false, &cmd("1", NOW - 2.0), NOW).expect("fresh");
        assert_eq!(
            (a.id.as_str(), a.cmd, a.age_unchecked),
            ("1", Command::Approve, false)
        );
        let again = error(g.admit(false, &cmd("1", NOW - 1.0), NOW + 1.0));
        assert!(again.contains("already ran"), "{again}");
        assert!(g.admit(false, &cmd("2", NOW), NOW).is_ok());
    }

    #[test]
    fn retained_late_early_and_undated_commands_are_refused_with_a_reason() {
        let mut g = CommandGate::default();
        assert!(error(g.admit(true, &cmd("r", NOW), NOW)).contains("retained"));
        assert!(error(g.admit(false, &cmd("old", NOW - 3600.0), NOW)).contains("3600 s ago"));
        assert!(error(g.admit(false, &cmd("new", NOW + 600.0), NOW)).contains("future"));
        let undated = br#"{"id":"u","cmd":"approve"}"#;
        assert!(error(g.admit(false, undated, NOW)).contains("\"at\""));
        // None of them counts as run: the same ids, fresh, run.
        for id in ["r", "old", "new"] {
            assert!(g.admit(false, &cmd(id, NOW), NOW).is_ok(), "{id}");
        }
    }

    #[test]
    fn an_unset_clock_takes_the_age_on_trust_but_not_a_repeat() {
        let mut g = CommandGate::default();
        let booted = 1_000_000.0; // 1970: no network time yet
        let a = g.admit(false, &cmd("1", NOW), booted).expect("taken");
        assert!(a.age_unchecked);
        assert!(error(g.admit(false, &cmd("1", NOW), booted)).contains("already ran"));
    }

    #[test]
    fn the_memory_of_ids_is_bounded() {
        let mut g = CommandGate::default();
        for i in 0..REMEMBERED_IDS + 10 {
            assert!(g.admit(false, &cmd(&i.to_string(), NOW), NOW).is_ok());
        }
        assert_eq!(g.ran.len(), REMEMBERED_IDS);
        // The oldest are forgotten; the recent ones still refused.
        assert!(g.admit(false, &cmd("0", NOW), NOW).is_ok());
        assert!(
            g.admit(false, &cmd(&(REMEMBERED_IDS + 9).to_string(), NOW), NOW)
                .is_err()
        );
    }
}
