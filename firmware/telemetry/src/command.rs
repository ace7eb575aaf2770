//! Commands from the fleet operator (`…/cmd`) and the box's replies
//! (`…/cmd/reply`): JSON with a correlation id, checked before anything
//! happens; a malformed one gets an error reply naming the problem.
//!
//! ```json
//! {"id": "42", "cmd": "switch", "uplink": "lte"}
//! {"id": "43", "cmd": "mode", "mode": "manual"}
//! {"id": "44", "cmd": "approve"}      {"id": "45", "cmd": "decline"}
//! {"id": "46", "cmd": "pair", "seconds": 120}
//! ```

use serde::Serialize;
use serde_json::Value;

/// Largest command accepted.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// A checked command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Planned switch to an uplink.
    Switch(String),
    /// `automatic` or `manual`.
    Mode(String),
    /// Carry out the suggested switch.
    Approve,
    /// Decline it.
    Decline,
    /// Open the pairing window for this many seconds.
    Pair(u32),
}

/// The reply to a command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandReply {
    /// The command's correlation id (empty if it had none readable).
    pub id: String,
    /// Done.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the box answered.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl CommandReply {
    /// A refusal.
    pub fn error(id: &str, why: impl Into<String>) -> Self {
        Self {
            id: id.to_string(),
            ok: false,
            error: Some(why.into()),
            data: Value::Null,
        }
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{key:?} (a string) is missing"))
}

/// Reads a command; `Err` is the reply to send (with the id if one could be
/// read).
pub fn parse(payload: &[u8]) -> Result<(String, Command), CommandReply> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(CommandReply::error(
            "",
            format!("command larger than {MAX_COMMAND_BYTES} bytes"),
        ));
    }
    let v: Value = serde_json::from_slice(payload)
        .map_err(|e| CommandReply::error("", format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(CommandReply::error("", "a command is a JSON object"));
    }
    let id = match v.get("id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(CommandReply::error(
                "",
                "\"id\" (1 to 64 characters, or a number) is missing",
            ));
        }
    };
    let fail = |why: String| CommandReply::error(&id, why);
    let cmd = text(&v, "cmd").map_err(fail)?;
    let c = match cmd {
        "switch" => Command::Switch(text(&v, "uplink").map_err(fail)?.to_string()),
        "mode" => match text(&v, "mode").map_err(fail)? {
            m @ ("automatic" | "manual") => Command::Mode(m.to_string()),
            other => return Err(fail(format!("no mode {other:?}; automatic or manual"))),
        },
        "approve" => Command::Approve,
        "decline" => Command::Decline,
        "pair" => {
            let s = v.get("seconds").map_or(Some(120), Value::as_u64);
            match s {
                Some(s @ 10..=600) => Command::Pair(u32::try_from(s).unwrap_or(120)),
                _ => return Err(fail("\"seconds\" must be 10 to 600".into())),
            }
        }
        other => {
            return Err(fail(format!(
                "no command {other:?}; switch, mode, approve, decline or pair"
            )));
        }
    };
    Ok((id, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, Command) {
        parse(s.as_bytes()).unwrap_or_else(|r| panic!("{s}: {r:?}"))
    }

    fn refused(s: &[u8]) -> CommandReply {
        match parse(s) {
            Err(r) => r,
            Ok(c) => panic!("accepted {c:?}"),
        }
    }

    #[test]
    fn every_command_reads() {
        assert_eq!(
            ok(r#"{"id":"1","cmd":"switch","uplink":"lte"}"#).1,
            Command::Switch("lte".into())
        );
        assert_eq!(
            ok(r#"{"id":2,"cmd":"mode","mode":"manual"}"#),
            ("2".into(), Command::Mode("manual".into()))
        );
        assert_eq!(ok(r#"{"id":"a","cmd":"approve"}"#).1, Command::Approve);
        assert_eq!(ok(r#"{"id":"a","cmd":"decline"}"#).1, Command::Decline);
        assert_eq!(ok(r#"{"id":"a","cmd":"pair"}"#).1, Command::Pair(120));
        assert_eq!(
            ok(r#"{"id":"a","cmd":"pair","seconds":30}"#).1,
            Command::Pair(30)
        );
    }

    #[test]
    fn bad_commands_get_a_reply_naming_the_problem() {
        let r = refused(b"{nope");
        assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("not JSON")),
            "{r:?}"
        );
        assert_eq!(
            refused(b"[1]").error.as_deref(),
            Some("a command is a JSON object")
        );
        assert!(
            refused(br#"{"cmd":"approve"}"#)
                .error
                .unwrap_or_default()
                .contains("\"id\"")
        );
        let r = refused(br#"{"id":"7","cmd":"reboot"}"#);
        assert_eq!(r.id, "7");
        assert!(
            r.error
                .unwrap_or_default()
                .contains("no command \"reboot\"")
        );
        assert!(
            refused(br#"{"id":"7","cmd":"switch"}"#)
                .error
                .unwrap_or_default()
                .contains("\"uplink\"")
        );
        assert!(
            refused(br#"{"id":"7","cmd":"mode","mode":"turbo"}"#)
                .error
                .unwrap_or_default()
                .contains("turbo")
        );
        assert!(
            refused(br#"{"id":"7","cmd":"pair","seconds":5}"#)
                .error
                .unwrap_or_default()
                .contains("10 to 600")
        );
        let big = format!(
            r#"{{"id":"1","cmd":"approve","pad":"{}"}}"#,
            "x".repeat(5000)
        );
        assert!(
            refused(big.as_bytes())
                .error
                .unwrap_or_default()
                .contains("larger")
        );
        let long_id = format!(r#"{{"id":"{}","cmd":"approve"}}"#, "i".repeat(65));
        assert!(refused(long_id.as_bytes()).error.is_some());
    }

    #[test]
    fn a_reply_serialises_without_empty_fields() {
        let r = CommandReply::error("9", "no");
        let t = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(t, r#"{"id":"9","ok":false,"error":"no"}"#);
    }
}
