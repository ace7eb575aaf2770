//! The topics of one box: `<prefix>/<box-id>/status` (retained snapshot),
//! `…/online` (retained `online`/`offline`, the last will), `…/events`
//! (handovers, suggestions, uplink and mode changes), `…/cmd` (commands
//! for this box only) and `…/cmd/reply`.

/// Why a prefix or box id cannot name topics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {value:?} cannot be part of an MQTT topic (no '+', '#', '/', NUL; 1 to 64 characters)"
)]
pub struct TopicError {
    what: &'static str,
    value: String,
}

fn check(what: &'static str, v: &str, slash_ok: bool) -> Result<(), TopicError> {
    let bad = v.is_empty()
        || v.len() > 64
        || v.contains(['+', '#', '\0'])
        || (!slash_ok && v.contains('/'))
        || v.starts_with('/')
        || v.ends_with('/');
    if bad {
        return Err(TopicError {
            what,
            value: v.to_string(),
        });
    }
    Ok(())
}

/// The topics of one box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Retained snapshot.
    pub status: String,
    /// Retained `online` / `offline` (last will).
    pub online: String,
    /// Events.
    pub events: String,
    /// Commands to the box.
    pub cmd: String,
    /// The box's replies.
    pub reply: String,
}

impl Topics {
    /// Topics under `prefix` (may have levels, e.g. `fleet/cbox`) for
    /// `box_id`.
    pub fn new(prefix: &str, box_id: &str) -> Result<Self, TopicError> {
        check("prefix", prefix, true)?;
        check("box id", box_id, false)?;
        let base = format!("{prefix}/{box_id}");
        Ok(Self {
            status: format!("{base}/status"),
            online: format!("{base}/online"),
            events: format!("{base}/events"),
            cmd: format!("{base}/cmd"),
            reply: format!("{base}/cmd/reply"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_under_prefix_and_box() {
        let t = Topics::new("fleet/cbox", "box-7").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.status, "fleet/cbox/box-7/status");
        assert_eq!(t.reply, "fleet/cbox/box-7/cmd/reply");
    }

    #[test]
    fn wildcards_and_separators_are_refused() {
        for (p, b) in [
            ("cbox", "a+b"),
            ("cbox", "a/b"),
            ("cb#x", "a"),
            ("", "a"),
            ("cbox/", "a"),
            ("cbox", ""),
        ] {
            assert!(Topics::new(p, b).is_err(), "{p} {b}");
        }
    }
}
