//! nkvm engine: the shared vocabulary ([`domain`], always built, also for the browser) and, with the
//! `runtime` feature, the cluster connection, PVC inventory, backups, restores and verification, history, schedules and
//! retention, metrics and notifications, authentication and audit used by the web app and the CLI.
#![forbid(unsafe_code)]

pub mod domain;

#[cfg(feature = "runtime")]
pub mod audit;
#[cfg(feature = "runtime")]
pub mod auth;
#[cfg(feature = "runtime")]
pub mod backup;
#[cfg(feature = "runtime")]
pub(crate) mod cancel;
#[cfg(feature = "runtime")]
pub mod connection;
#[cfg(feature = "runtime")]
pub mod datadir;
#[cfg(feature = "runtime")]
pub mod destination;
#[cfg(feature = "runtime")]
pub mod download;
#[cfg(feature = "runtime")]
pub mod inventory;
#[cfg(feature = "runtime")]
pub mod kubeapi;
#[cfg(feature = "runtime")]
pub(crate) mod objects;
#[cfg(feature = "runtime")]
pub mod observe;
#[cfg(feature = "runtime")]
pub(crate) mod owners;
#[cfg(feature = "runtime")]
pub(crate) mod quantity;
#[cfg(feature = "runtime")]
pub mod restore;
#[cfg(feature = "runtime")]
pub mod schedule;
#[cfg(feature = "runtime")]
pub mod store;
#[cfg(feature = "runtime")]
pub mod timestamp;
#[cfg(feature = "runtime")]
pub mod workspace;
