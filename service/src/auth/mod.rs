//! Authentication and authorisation: argon2id passwords, HS256 access tokens, JWTs of trusted
//! issuers (the company's own app), role checks.

mod external;
mod extractor;
mod password;
pub mod session;
mod throttle;
mod token;

pub use external::{ExternalIdentity, ExternalTokenError, TrustedIssuers};
pub use extractor::Caller;
pub use password::{
    PasswordError, hash_password, hash_password_holding, verify_password, verify_password_holding,
};
pub use session::TokenResponse;
pub use throttle::{AuthThrottle, HashPermit, client_ip};
pub use token::{Claims, TokenKeys};
