//! The network access point's registration with bluetoothd:
//! `org.bluez.NetworkServer1.Register("nap", bridge)`, which bluer does not
//! wrap — a raw D-Bus call on the system bus, on a connection of its own.
//!
//! BlueZ binds the registration to the caller's connection: it lasts as
//! long as [`Registration`] is held, and dies with bluetoothd. The
//! registration therefore also watches `org.bluez`'s owner, so the
//! Bluetooth task notices a restart and registers again.

use std::sync::Arc;
use std::time::Duration;

use dbus::message::MatchRule;
use dbus::nonblock::{MsgMatch, Proxy, SyncConnection};
use futures_util::{Stream, StreamExt};
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A live NAP registration.
pub(super) struct Registration {
    io: JoinHandle<()>,
    _match: MsgMatch,
    owner_changes: std::pin::Pin<Box<dyn Stream<Item = dbus::Message> + Send>>,
    owner: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Closing the connection is BlueZ's signal to forget the server.
        self.io.abort();
    }
}

fn dbus_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Registers the NAP of `adapter` on `bridge`.
pub(super) async fn register(adapter: &str, bridge: &str) -> Result<Registration, String> {
    let (resource, conn): (_, Arc<SyncConnection>) =
        dbus_tokio::connection::new_system_sync().map_err(|e| dbus_err("system bus", e))?;
    let io = tokio::spawn(async move {
        let _ = resource.await;
    });
    let rule = MatchRule::new_signal("org.freedesktop.DBus", "NameOwnerChanged")
        .with_sender("org.freedesktop.DBus");
    let (m, owner_changes) = conn
        .add_match(rule)
        .await
        .map_err(|e| dbus_err("watching bluetoothd", e))?
        .msg_stream();
    let bus = Proxy::new(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        TIMEOUT,
        conn.clone(),
    );
    let (owner,): (String,) = bus
        .method_call("org.freedesktop.DBus", "GetNameOwner", ("org.bluez",))
        .await
        .map_err(|_| "bluetoothd is not running (nobody owns org.bluez)".to_string())?;
    let path = format!("/org/bluez/{adapter}");
    let server = Proxy::new("org.bluez", path, TIMEOUT, conn.clone());
    let () = server
        .method_call("org.bluez.NetworkServer1", "Register", ("nap", bridge))
        .await
        .map_err(|e| dbus_err("NetworkServer1.Register(nap)", e))?;
    Ok(Registration {
        io,
        _match: m,
        owner_changes: Box::pin(owner_changes),
        owner,
    })
}

impl Registration {
    /// bluetoothd's connection name when it was registered.
    pub(super) fn owner(&self) -> &str {
        &self.owner
    }

    /// Resolves when the registration is gone: bluetoothd stopped or was
    /// replaced, or the bus connection closed.
    pub(super) async fn lost(&mut self) -> String {
        while let Some(msg) = self.owner_changes.next().await {
            let Ok((name, _old, new)) = msg.read3::<String, String, String>() else {
                continue;
            };
            if name == "org.bluez" && new != self.owner {
                return if new.is_empty() {
                    "bluetoothd went away".into()
                } else {
                    format!("bluetoothd restarted (now {new})")
                };
            }
        }
        "the D-Bus connection closed".into()
    }
}
