//! nkvm's vocabulary, shared by the engine, the server, the CLI and the browser build: Kubernetes
//! names and `NS/PVC` references ([`names`]), run statuses, stages and progress ([`run`]), PVC summaries,
//! inventory records and owners ([`pvc`]), restore stages, modes and verification outcomes
//! ([`restore`]), text forms of enums ([`enums`]), text for people ([`format`](mod@format)) and
//! tenant-chosen text made safe to show ([`untrusted`]). Pure: no I/O,
//! no Kubernetes client, no async runtime, so it also compiles to wasm.

pub mod enums;
pub mod format;
pub mod names;
pub mod pvc;
pub mod restore;
pub mod run;
pub mod untrusted;

pub use enums::UnknownValue;
pub use names::{NameError, PvcRef};
pub use pvc::{Flag, NamespaceRefusal, Owner, PvcRecord, PvcSummary};
pub use restore::{DrillStatus, JobKind, RestoreMode, RestoreStage, VerifyStatus};
pub use run::{Progress, ResultStatus, RunStatus, Stage};
pub use untrusted::escape_control;
