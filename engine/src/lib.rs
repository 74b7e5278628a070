//! nkvm engine: cluster connection, PVC inventory, backups and history, shared by the web app and the CLI.
#![forbid(unsafe_code)]

pub mod backup;
pub mod connection;
pub mod download;
pub mod inventory;
pub mod owners;
pub mod quantity;
pub mod store;
pub mod workspace;
