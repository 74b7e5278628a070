//! Reusable components shared by the pages.

pub mod alert;
pub mod coverage;
pub mod header;
pub mod runs;
