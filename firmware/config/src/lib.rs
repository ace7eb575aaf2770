//! Typed, validated configuration of the daemons: one TOML file each
//! (`cnapt.toml` for the box, `snapt.toml` for the server side).
//!
//! Parsing rejects unknown keys and wrong types with the key's path; a second
//! pass checks values and cross-references and names the offending key
//! (`service[2].snapt: no [[snapt]] named "lab"`). Every field's default and
//! effect is documented here and in `docs/config/*.toml`.
#![warn(missing_docs)]

mod cnapt;
mod common;
mod policy;
mod snapt;

pub use cnapt::{BoxService, ClientTarget, CnaptConfig, SnaptLink, Uplink};
pub use common::{CipherChoice, ConfigError, Protocol, SessionSection, TlsSection};
pub use policy::{BoxPolicy, DestinationRule};
pub use snapt::{ClientServiceListen, ServerService, SnaptConfig};
