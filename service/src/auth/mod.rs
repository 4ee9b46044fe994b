//! Authentication and authorisation: argon2id passwords, HS256 access tokens, role checks.

mod extractor;
mod password;
mod token;

pub use extractor::Caller;
pub use password::{PasswordError, hash_password, verify_password};
pub use token::{Claims, TokenKeys};
