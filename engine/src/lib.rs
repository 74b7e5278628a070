//! nkvm engine: cluster connection, PVC inventory, backups and history, authentication and audit,
//! shared by the web app and the CLI.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod backup;
pub mod connection;
pub mod destination;
pub mod download;
pub mod inventory;
pub mod owners;
pub mod quantity;
pub mod store;
pub mod workspace;
