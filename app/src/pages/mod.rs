//! Routed pages.

pub mod audit;
pub mod connect;
pub mod history;
pub mod inventory;
pub mod not_found;
pub mod restore;
pub mod schedules;
