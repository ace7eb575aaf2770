//! Mutual TLS 1.3 for cbox tunnels.
//!
//! * `pki` (feature `pki`, for cboxctl only): issues what a deployment needs — a CA, SNAPT server
//!   certificates, one certificate per box (its id in the subject CN), and a
//!   certificate revocation list — into a directory with the permissions an
//!   operator expects.
//! * [`config`]: rustls client (box) and server (SNAPT) configurations on the
//!   `ring` provider, TLS 1.3 only, AES-GCM first where the CPU has AES
//!   instructions and ChaCha20-Poly1305 first where not (the Pi 4 has
//!   none), session resumption on, client
//!   certificates required and checked against the CA and the CRL.
//! * [`identity`]: the box id a verified peer certificate stands for.
//!
//! It does not open sockets: the runtime wraps its TCP streams with these
//! configurations (tokio-rustls).
#![warn(missing_docs)]

pub mod config;
pub mod identity;
#[cfg(feature = "pki")]
pub mod pki;

pub use config::{CipherPreference, TlsError, client_config, revoked_serials, server_config};
pub use identity::{IdentityError, peer_box_id, peer_serial};
#[cfg(feature = "pki")]
pub use pki::{Pki, PkiError};
