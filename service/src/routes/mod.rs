//! HTTP routes, one module per resource.

pub mod audit;
pub mod auth;
pub mod certificates;
pub mod datasets;
pub mod deadlines;
pub mod email;
pub mod health;
pub mod ingest;
pub mod jobs;
pub mod lifecycle;
pub mod register;
pub mod requests;
pub mod residency;
pub mod restrictions;
pub mod tokens;
pub mod users;
pub mod webhooks;

use actix_web::web;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(
            web::scope("/v1")
                .service(auth::register)
                .service(auth::login)
                .service(auth::refresh)
                .service(auth::logout)
                .service(auth::change_password)
                .service(email::resend)
                .service(email::verify)
                .service(users::me)
                .service(users::list)
                .service(users::link_subject)
                .service(users::disable)
                .service(users::enable)
                .service(datasets::create)
                .service(datasets::list)
                .service(datasets::get)
                .service(datasets::remove)
                .service(ingest::ingest)
                .service(ingest::compact)
                .service(tokens::create)
                .service(tokens::list)
                .service(tokens::revoke)
                .service(requests::create)
                .service(requests::list)
                .service(requests::get)
                .service(requests::approve)
                .service(requests::reject)
                .service(lifecycle::cancel)
                .service(lifecycle::create_hold)
                .service(lifecycle::list_holds)
                .service(lifecycle::release_hold)
                .service(deadlines::extend)
                .service(requests::export)
                .service(restrictions::list_restricted)
                .service(audit::list)
                .service(audit::export)
                .service(audit::verify)
                .service(audit::checkpoints)
                .service(audit::public_keys)
                .service(certificates::certificate)
                .service(register::export)
                .service(jobs::list)
                .service(jobs::get)
                .service(jobs::retry)
                .service(jobs::cancel)
                .service(webhooks::create)
                .service(webhooks::list)
                .service(webhooks::deactivate)
                .service(webhooks::deliveries)
                .service(webhooks::retry)
                .service(residency::set_jurisdiction)
                .service(residency::get_jurisdiction)
                .service(residency::set_policy)
                .service(residency::delete_policy)
                .service(residency::list_policies)
                .service(residency::scan)
                .service(residency::remediate)
                .service(residency::violations),
        );
}
