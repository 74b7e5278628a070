//! Reusable components shared by the pages.

pub mod header;
pub mod runs;
