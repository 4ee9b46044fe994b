//! The authenticated caller, extracted from `Authorization: Bearer <token>`: an account's JWT
//! (HS256, issued by Lethe), a JWT of a trusted issuer (RS256, ES256 or EdDSA, issued by the
//! company's own app; the subject role), or a pipeline's API token (`lethe_pat_…`, the
//! producer role).

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use lethe_core::domain::{ApiTokenSecret, Role, SubjectId};
use lethe_core::store::TokenScope;

use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling. The account (or API token) is re-read on every call, so a changed role,
/// subject link or a revocation takes effect at once.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Account id; for a producer, the API token's id; for a subject vouched for by a trusted
    /// issuer, `external:<issuer>#<first 16 hex digits of the subject's pseudonym>` (there is
    /// no account).
    pub user_id: String,
    /// Current role.
    pub role: Role,
    /// The data subject the account is linked to (by an admin), or named by a trusted
    /// issuer's token.
    pub subject_id: Option<SubjectId>,
    /// The trusted issuer whose token identified the caller; `None` for Lethe's own accounts
    /// and API tokens.
    pub issuer: Option<String>,
    /// A producer token's scope; `None` for everyone else and for tokens created before
    /// scopes existed.
    pub scope: Option<TokenScope>,
}

impl Caller {
    /// `user:<uuid>` (an account), `token:<uuid>` (a producer's API token) or
    /// `external:<issuer>#<pseudonym prefix>` (a trusted issuer's subject), as used for actors
    /// in history and audit entries. Never the subject id itself: audit entries hold no
    /// personal data.
    pub fn actor(&self) -> String {
        match (&self.issuer, self.role) {
            (Some(_), _) => self.user_id.clone(),
            (None, Role::Producer) => format!("token:{}", self.user_id),
            (None, _) => format!("user:{}", self.user_id),
        }
    }

    /// How the caller's identity was verified when it came with a trusted issuer's token:
    /// `jwt:<issuer>`; `None` for Lethe's own accounts and API tokens.
    pub fn verification(&self) -> Option<String> {
        self.issuer.as_ref().map(|issuer| format!("jwt:{issuer}"))
    }

    /// Fails with 403 when the caller is a producer token not granted the dataset
    /// `dataset_id`; anyone else passes (their role is checked by [`Caller::require`]).
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] naming the dataset.
    pub fn require_dataset(&self, dataset_id: &str) -> Result<(), ApiError> {
        if self.role != Role::Producer
            || TokenScope::allows_dataset(self.scope.as_ref(), dataset_id)
        {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "this token is not granted the dataset {dataset_id}"
        )))
    }

    /// Fails with 403 when the caller is a producer token not granted the restricted list.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`].
    pub fn require_restricted_list(&self) -> Result<(), ApiError> {
        if self.role != Role::Producer || TokenScope::allows_restricted_list(self.scope.as_ref()) {
            return Ok(());
        }
        Err(ApiError::Forbidden(
            "this token is not granted the list of restricted subjects (list_restricted)".into(),
        ))
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
            let header = jsonwebtoken::decode_header(token)
                .map_err(|e| ApiError::Unauthorized(format!("invalid access token: {e}")))?;
            if header.alg != jsonwebtoken::Algorithm::HS256 {
                return external_caller(&state, token, &header).await;
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
            if user.disabled_at.is_some() {
                return Err(ApiError::Unauthorized("the account is disabled".into()));
            }
            if claims.epoch != user.token_epoch {
                return Err(ApiError::Unauthorized(
                    "this session has ended (signed out, password changed or account re-enabled); sign in again".into(),
                ));
            }
            Ok(Caller {
                user_id: user.id,
                role: user.role,
                subject_id: user.subject_id,
                issuer: None,
                scope: None,
            })
        })
    }
}

/// The subject named by a trusted issuer's token (any token whose `alg` is not Lethe's HS256
/// comes here, so an HMAC token is never checked against an issuer's public key); 401 when
/// the token does not verify.
async fn external_caller(
    state: &AppState,
    token: &str,
    header: &jsonwebtoken::Header,
) -> Result<Caller, ApiError> {
    let identity = state
        .issuers
        .verify(token, header)
        .await
        .map_err(|e| ApiError::Unauthorized(format!("invalid access token: {e}")))?;
    let pseudonym = state.pseudonyms.pseudonym(&identity.subject);
    Ok(Caller {
        user_id: format!("external:{}#{}", identity.issuer, &pseudonym[..16]),
        role: Role::Subject,
        subject_id: Some(identity.subject),
        issuer: Some(identity.issuer),
        scope: None,
    })
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
            issuer: None,
            scope: t.scope,
        }),
        _ => Err(ApiError::Unauthorized(
            "invalid access token: unknown or revoked API token".into(),
        )),
    }
}
