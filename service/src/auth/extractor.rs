//! The authenticated caller, extracted from `Authorization: Bearer <token>`: an account's JWT,
//! or a pipeline's API token (`lethe_pat_…`, the producer role).

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use lethe_core::domain::{ApiTokenSecret, Role, SubjectId};

use crate::error::ApiError;
use crate::startup::AppState;

/// Who is calling. The account (or API token) is re-read on every call, so a changed role,
/// subject link or a revocation takes effect at once.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Account id; for a producer, the API token's id.
    pub user_id: String,
    /// Current role.
    pub role: Role,
    /// The data subject the account is linked to (by an admin), if any.
    pub subject_id: Option<SubjectId>,
}

impl Caller {
    /// `user:<uuid>` (an account) or `token:<uuid>` (a producer's API token), as used for
    /// actors in history and audit entries.
    pub fn actor(&self) -> String {
        match self.role {
            Role::Producer => format!("token:{}", self.user_id),
            _ => format!("user:{}", self.user_id),
        }
    }

    /// Fails with 403 unless the caller has one of `roles`.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`].
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "this action needs the role {}; you are {}",
                allowed.join(" or "),
                self.role.as_str()
            )))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("app state missing")))?;
            let header = header.ok_or_else(|| {
                ApiError::Unauthorized("missing Authorization: Bearer <token> header".into())
            })?;
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .ok_or_else(|| {
                    ApiError::Unauthorized("Authorization must use the Bearer scheme".into())
                })?
                .trim();
            if ApiTokenSecret::looks_like(token) {
                return api_token_caller(&state, token).await;
            }
            let claims = state
                .tokens
                .verify(token)
                .map_err(|e| ApiError::Unauthorized(format!("invalid access token: {e}")))?;
            let user = match state.store.user(&claims.sub).await {
                Ok(user) => user,
                Err(lethe_core::store::StoreError::NotFound { .. }) => {
                    return Err(ApiError::Unauthorized(
                        "the token's account no longer exists".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            Ok(Caller {
                user_id: user.id,
                role: user.role,
                subject_id: user.subject_id,
            })
        })
    }
}

/// The producer behind an API token; 401 when the token is unknown or revoked (the same
/// answer for both, as for a bad JWT).
async fn api_token_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let hash = ApiTokenSecret::hash_of(token);
    match state.store.api_token_by_hash(&hash).await? {
        Some(t) if t.revoked_at.is_none() => Ok(Caller {
            user_id: t.id,
            role: t.role,
            subject_id: None,
        }),
        _ => Err(ApiError::Unauthorized(
            "invalid access token: unknown or revoked API token".into(),
        )),
    }
}
