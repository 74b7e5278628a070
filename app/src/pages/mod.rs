//! Routed pages.

pub mod connect;
pub mod history;
pub mod inventory;
pub mod not_found;
