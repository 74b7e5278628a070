//! Cancelling the jobs an engine runs, by id: the part of the backup and restore engines'
//! registries of active jobs that is the same in both, and the audit record of a cancel.

use tokio_util::sync::CancellationToken;

use crate::audit::{AuditAction, AuditOutcome};
use crate::backup::Requester;
use crate::store::Store;

/// A job in an engine's registry of active jobs.
pub(crate) trait Cancellable {
    /// The job's id (a backup run id, a restore's, verification's or drill's id).
    fn id(&self) -> &str;
    fn token(&self) -> &CancellationToken;
}

/// Cancels the job `id` among `jobs`; false when none has that id.
pub(crate) fn cancel_one<'a, J: Cancellable + 'a>(
    jobs: impl IntoIterator<Item = &'a J>,
    id: &str,
) -> bool {
    jobs.into_iter()
        .find(|job| job.id() == id)
        .map(|job| job.token().cancel())
        .is_some()
}

/// Cancels every job of `jobs`; returns how many.
pub(crate) fn cancel_every<'a, J: Cancellable + 'a>(
    jobs: impl IntoIterator<Item = &'a J>,
) -> usize {
    jobs.into_iter().map(|job| job.token().cancel()).count()
}

/// Records that `requester` cancelled `target` with `action`, when `cancelled`; returns `cancelled`.
pub(crate) async fn audited(
    store: &Store,
    requester: &Requester,
    action: AuditAction,
    target: String,
    cancelled: bool,
) -> bool {
    if cancelled {
        let event = requester
            .audit_event(action, AuditOutcome::Success)
            .with_target(target);
        store.audit(&event).await;
    }
    cancelled
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Job(&'static str, CancellationToken);

    impl Cancellable for Job {
        fn id(&self) -> &str {
            self.0
        }
        fn token(&self) -> &CancellationToken {
            &self.1
        }
    }

    #[test]
    fn cancels_one_job_by_id_or_every_job() {
        let jobs = [
            Job("a", CancellationToken::new()),
            Job("b", CancellationToken::new()),
        ];
        assert!(!cancel_one(&jobs, "c"));
        assert!(cancel_one(&jobs, "b"));
        assert!(!jobs[0].1.is_cancelled());
        assert!(jobs[1].1.is_cancelled());
        assert_eq!(cancel_every(&jobs), 2);
        assert!(jobs[0].1.is_cancelled());
        assert_eq!(cancel_every(&[] as &[Job]), 0);
    }
}
