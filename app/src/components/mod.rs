//! Reusable components shared by the pages.

pub mod alert;
pub mod header;
pub mod runs;
