//! Routed pages.

pub mod inventory;
pub mod not_found;
