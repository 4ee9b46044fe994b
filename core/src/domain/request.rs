//! The privacy request (data subject request, DSR) model: types and statuses.

use serde::{Deserialize, Serialize};

use super::ParseError;

/// The right a data subject exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestType {
    /// Right of access (GDPR Art. 15): a copy of every row that holds the subject.
    Access,
    /// Right to data portability (GDPR Art. 20): the subject's rows in machine-readable
    /// formats (Parquet, CSV and JSON).
    Portability,
    /// Right to rectification (GDPR Art. 16): columns of the subject's rows in one dataset set
    /// to corrected values.
    Rectification,
    /// Right to erasure (GDPR Art. 17): every row of the subject removed from the lake.
    Erasure,
    /// Right to restriction of processing (GDPR Art. 18): the subject is marked restricted,
    /// which pipelines honour (`GET /v1/subjects/restricted`).
    Restriction,
    /// The end of a restriction (GDPR Art. 18(3)): the subject is no longer restricted.
    RestrictionLift,
}

impl RequestType {
    /// Every type, in the order of the GDPR articles.
    pub const ALL: [RequestType; 6] = [
        RequestType::Access,
        RequestType::Rectification,
        RequestType::Erasure,
        RequestType::Restriction,
        RequestType::RestrictionLift,
        RequestType::Portability,
    ];

    /// The stable lower-case name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Access => "access",
            RequestType::Portability => "portability",
            RequestType::Rectification => "rectification",
            RequestType::Erasure => "erasure",
            RequestType::Restriction => "restriction",
            RequestType::RestrictionLift => "restriction_lift",
        }
    }

    /// The GDPR article granting the right: `"15"`, `"16"`, `"17"`, `"18"` or `"20"`.
    pub fn gdpr_article(self) -> &'static str {
        match self {
            RequestType::Access => "15",
            RequestType::Rectification => "16",
            RequestType::Erasure => "17",
            RequestType::Restriction | RequestType::RestrictionLift => "18",
            RequestType::Portability => "20",
        }
    }

    /// Whether a completed request of this type has an export archive to download (access and
    /// portability).
    pub fn has_export(self) -> bool {
        matches!(self, RequestType::Access | RequestType::Portability)
    }

    /// Parses a stable name (`access`, `portability`, `rectification`, `erasure`,
    /// `restriction`, `restriction_lift`).
    ///
    /// # Errors
    /// [`ParseError`] for any other value.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        RequestType::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
            .ok_or_else(|| ParseError {
                field: "type",
                reason: format!(
                    "unknown request type '{value}' (expected one of {})",
                    RequestType::ALL.map(RequestType::as_str).join(", ")
                ),
            })
    }
}

/// Where a privacy request stands.
///
/// ```text
/// received ─┬─▶ pending_approval ─┬─▶ approved ─▶ running ─┬─▶ completed
///           │   (policy: review)   │   (cooling-off)        ├─▶ partially_completed (legal hold)
///           └─▶ approved (auto) ───┘                        └─▶ failed ─▶ running (admin retry)
/// received | pending_approval ─▶ rejected (reason shown to the subject, Art. 12(4))
/// received | pending_approval | approved (job not started) ─▶ cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Filed (the first status of every request).
    Received,
    /// Waiting for an admin's decision (the approval policy of its type is `review`).
    PendingApproval,
    /// Approved by an admin; a job is queued.
    Approved,
    /// A worker is executing the job.
    Running,
    /// Done; the result holds per-dataset counts (and the export for access).
    Completed,
    /// Refused by an admin with a reason the subject sees (GDPR Art. 12(4)).
    Rejected,
    /// The job failed after its retries; the last error is recorded.
    Failed,
    /// Done except for data kept under a legal hold (GDPR Art. 17(3)); the result says what
    /// was kept and why.
    PartiallyCompleted,
    /// Withdrawn by the subject (or an admin) before its job started, e.g. during an
    /// erasure's cooling-off period.
    Cancelled,
}

impl RequestStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RequestStatus; 9] = [
        RequestStatus::Received,
        RequestStatus::PendingApproval,
        RequestStatus::Approved,
        RequestStatus::Running,
        RequestStatus::Completed,
        RequestStatus::PartiallyCompleted,
        RequestStatus::Rejected,
        RequestStatus::Failed,
        RequestStatus::Cancelled,
    ];

    /// The stable lower-case name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Received => "received",
            RequestStatus::PendingApproval => "pending_approval",
            RequestStatus::Approved => "approved",
            RequestStatus::Running => "running",
            RequestStatus::Completed => "completed",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Failed => "failed",
            RequestStatus::PartiallyCompleted => "partially_completed",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a status name.
    ///
    /// # Errors
    /// [`ParseError`] for an unknown name.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        Ok(match value {
            "received" => RequestStatus::Received,
            "pending_approval" => RequestStatus::PendingApproval,
            "approved" => RequestStatus::Approved,
            "running" => RequestStatus::Running,
            "completed" => RequestStatus::Completed,
            "rejected" => RequestStatus::Rejected,
            "failed" => RequestStatus::Failed,
            "partially_completed" => RequestStatus::PartiallyCompleted,
            "cancelled" => RequestStatus::Cancelled,
            other => {
                return Err(ParseError {
                    field: "status",
                    reason: format!("unknown status '{other}'"),
                });
            }
        })
    }

    /// Whether a request may move from `self` to `next`.
    pub fn can_become(self, next: RequestStatus) -> bool {
        use RequestStatus::*;
        matches!(
            (self, next),
            (Received, PendingApproval)
                | (Received, Approved)
                | (PendingApproval, Approved)
                | (Received, Rejected)
                | (PendingApproval, Rejected)
                | (Received, Cancelled)
                | (PendingApproval, Cancelled)
                // only while its job has not started (the store checks that in the same
                // transaction)
                | (Approved, Cancelled)
                | (Approved, Running)
                | (Running, Completed)
                | (Running, PartiallyCompleted)
                | (Running, Failed)
                // a worker that died mid-job hands the request back to the queue
                | (Running, Running)
                // an admin retries a dead-lettered job, or cancels a queued one
                | (Failed, Running)
                | (Approved, Failed)
        )
    }

    /// Whether the request is finished and will not change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestStatus::Completed
                | RequestStatus::PartiallyCompleted
                | RequestStatus::Rejected
                | RequestStatus::Failed
                | RequestStatus::Cancelled
        )
    }

    /// Whether an admin may still decide (approve or reject) the request.
    pub fn awaits_decision(self) -> bool {
        matches!(
            self,
            RequestStatus::Received | RequestStatus::PendingApproval
        )
    }
}

impl std::fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_lifecycle_transitions_are_allowed() {
        use RequestStatus::*;
        assert!(Received.can_become(Approved));
        assert!(Received.can_become(Rejected));
        assert!(Approved.can_become(Running));
        assert!(Running.can_become(Completed));
        assert!(!Received.can_become(Running));
        assert!(!Completed.can_become(Running));
        assert!(Failed.can_become(Running), "an admin retry");
        assert!(!Rejected.can_become(Approved));
        assert!(!Approved.can_become(Rejected));
        assert!(Received.can_become(PendingApproval));
        assert!(PendingApproval.can_become(Approved));
        assert!(PendingApproval.can_become(Rejected));
        assert!(
            Approved.can_become(Cancelled),
            "during the cooling-off period"
        );
        assert!(!Running.can_become(Cancelled), "too late once the job runs");
        assert!(!Cancelled.can_become(Approved));
        assert!(Running.can_become(PartiallyCompleted));
        assert!(Cancelled.is_final() && PartiallyCompleted.is_final());
    }

    #[test]
    fn names_round_trip() {
        for s in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(s.as_str()).unwrap(), s);
        }
        for t in RequestType::ALL {
            assert_eq!(RequestType::parse(t.as_str()).unwrap(), t);
            let json = serde_json::to_value(t).unwrap();
            assert_eq!(json, t.as_str(), "serde and the database agree");
        }
        assert!(RequestType::parse("deletion").is_err());
    }

    #[test]
    fn each_right_names_its_article_and_only_exports_have_archives() {
        assert_eq!(RequestType::Portability.gdpr_article(), "20");
        assert_eq!(RequestType::Rectification.gdpr_article(), "16");
        assert_eq!(RequestType::RestrictionLift.gdpr_article(), "18");
        let with_archive: Vec<RequestType> = RequestType::ALL
            .into_iter()
            .filter(|t| t.has_export())
            .collect();
        assert_eq!(
            with_archive,
            [RequestType::Access, RequestType::Portability]
        );
    }
}
