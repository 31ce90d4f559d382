//! The route table: every handler is registered here, with its OpenAPI description.

pub mod agents;
pub mod alerts;
pub mod audit;
pub mod container_create;
pub mod containers;
pub(crate) mod document_rules;
pub mod health;
pub mod install;
pub mod logs;
pub mod mfa;
pub mod orgs;
pub mod plugins;
pub mod policies;
pub mod proxies;
pub mod proxy_certificates;
pub mod session;
pub mod signup;
pub mod sso;
pub mod system;
pub mod tokens;
pub mod users;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ErrorBody;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "InfraPilot API",
        description = "Control plane for Docker hosts. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Every route of the host, with its OpenAPI operations.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi_json))
        .routes(routes!(system::roles))
        .routes(routes!(users::setup_status, users::setup))
        .routes(routes!(session::login))
        .routes(routes!(session::mfa_verify))
        .routes(routes!(session::refresh))
        .routes(routes!(session::logout))
        .routes(routes!(session::me))
        .routes(routes!(session::change_password))
        .routes(routes!(session::list_sessions))
        .routes(routes!(session::revoke_session))
        .routes(routes!(mfa::status))
        .routes(routes!(mfa::enroll))
        .routes(routes!(mfa::confirm))
        .routes(routes!(mfa::disable))
        .routes(routes!(mfa::regenerate_backup_codes))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(users::reset_mfa))
        .routes(routes!(signup::sign_up))
        .routes(routes!(signup::verify_email))
        .routes(routes!(orgs::list, orgs::create))
        .routes(routes!(orgs::get, orgs::update, orgs::delete))
        .routes(routes!(orgs::list_members, orgs::add_member))
        .routes(routes!(orgs::update_member, orgs::remove_member))
        .routes(routes!(orgs::reset_member_mfa))
        .routes(routes!(orgs::list_invitations, orgs::invite))
        .routes(routes!(orgs::revoke_invitation))
        .routes(routes!(orgs::accept_invitation))
        .routes(routes!(sso::login_providers))
        .routes(routes!(sso::start_login))
        .routes(routes!(sso::callback_get, sso::callback_post))
        .routes(routes!(sso::exchange))
        .routes(routes!(sso::password_login))
        .routes(routes!(sso::saml_metadata))
        .routes(routes!(sso::list_providers, sso::create_provider))
        .routes(routes!(sso::get_policy, sso::set_policy))
        .routes(routes!(
            sso::get_provider,
            sso::update_provider,
            sso::delete_provider
        ))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(agents::list_tokens, agents::create_token))
        .routes(routes!(agents::revoke_token))
        .routes(routes!(agents::enroll))
        .routes(routes!(agents::list))
        .routes(routes!(agents::get))
        .routes(routes!(agents::revoke))
        .routes(routes!(install::script))
        .routes(routes!(install::download))
        .routes(routes!(install::checksum))
        .routes(routes!(containers::list, container_create::create))
        .routes(routes!(containers::detail, containers::delete))
        .routes(routes!(containers::reveal_env))
        .routes(routes!(containers::start))
        .routes(routes!(containers::stop))
        .routes(routes!(containers::restart))
        .routes(routes!(containers::start_stack))
        .routes(routes!(containers::stop_stack))
        .routes(routes!(containers::restart_stack))
        .routes(routes!(containers::logs))
        .routes(routes!(containers::follow_logs))
        .routes(routes!(containers::exec))
        .routes(routes!(containers::events))
        .routes(routes!(containers::commands))
        .routes(routes!(logs::list))
        .routes(routes!(logs::volume))
        .routes(routes!(logs::export_csv))
        .routes(routes!(logs::stream))
        .routes(routes!(logs::get_retention, logs::set_retention))
        .routes(routes!(health::health))
        .routes(routes!(health::node_samples))
        .routes(routes!(plugins::list, plugins::install))
        .routes(routes!(plugins::get, plugins::uninstall))
        .routes(routes!(plugins::enable))
        .routes(routes!(plugins::disable))
        .routes(routes!(plugins::license, plugins::upload_license))
        .routes(routes!(alerts::list_channels, alerts::create_channel))
        .routes(routes!(
            alerts::get_channel,
            alerts::update_channel,
            alerts::delete_channel
        ))
        .routes(routes!(alerts::test_channel))
        .routes(routes!(alerts::list_rules, alerts::create_rule))
        .routes(routes!(alerts::update_rule, alerts::delete_rule))
        .routes(routes!(alerts::history))
        .routes(routes!(policies::list, policies::create))
        .routes(routes!(policies::get, policies::update, policies::delete))
        .routes(routes!(policies::types))
        .routes(routes!(policies::violations))
        .routes(routes!(policies::dry_run))
        .routes(routes!(proxies::list, proxies::create))
        .routes(routes!(proxies::get, proxies::update, proxies::delete))
        .routes(routes!(proxies::revisions))
        .routes(routes!(proxies::rollback))
        .routes(routes!(proxies::reapply))
        .routes(routes!(proxies::drift))
        .routes(routes!(
            proxy_certificates::list,
            proxy_certificates::upload
        ))
        .routes(routes!(
            proxy_certificates::get,
            proxy_certificates::replace,
            proxy_certificates::delete
        ))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
}

/// What every operation may answer besides its own responses, with why (the document states
/// every rule the server applies: generated clients and the dashboard's types depend on it).
const STANDARD_ERRORS: &[(&str, &str)] = &[
    ("400", "Bad input: the error names the field"),
    (
        "404",
        "Something the request names does not exist (the field says which)",
    ),
    (
        "405",
        "The route exists but not with this method (`Allow` lists the methods)",
    ),
    (
        "409",
        "The current state does not allow it (e.g. the node is offline or the name is taken)",
    ),
    ("413", "The body is over 64 KiB"),
    ("415", "The body is not `application/json`"),
    (
        "422",
        "An `Idempotency-Key` was reused for a different request",
    ),
    (
        "429",
        "Too many attempts or too busy; `Retry-After` says when to come back",
    ),
    (
        "503",
        "A part this needs is not running (the plugin runtime, a proxy backend)",
    ),
];

/// Answers of an operation that needs credentials.
const AUTHENTICATED_ERRORS: &[(&str, &str)] = &[
    ("401", "No valid credentials"),
    (
        "403",
        "The caller's role (or credential type) is not enough",
    ),
];

/// Completes the generated document: standard error answers on every operation, the bearer
/// requirement on exactly the operations `ACCESS_RULES` protects (none on public ones).
pub fn complete_document(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |why: &str| -> RefOr<utoipa::openapi::Response> {
        RefOr::T(
            ResponseBuilder::new()
                .description(why)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            ("GET", item.get.as_mut()),
            ("PUT", item.put.as_mut()),
            ("POST", item.post.as_mut()),
            ("DELETE", item.delete.as_mut()),
            ("PATCH", item.patch.as_mut()),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let access = crate::access::ACCESS_RULES
                .iter()
                .find(|(m, p, _)| *m == method && *p == path.as_str())
                .map(|(_, _, a)| *a);
            let protected = !matches!(access, Some(crate::access::Access::Public) | None);
            let responses = &mut operation.responses.responses;
            for (code, why) in STANDARD_ERRORS {
                responses
                    .entry((*code).to_owned())
                    .or_insert_with(|| error(why));
            }
            if protected {
                for (code, why) in AUTHENTICATED_ERRORS {
                    responses
                        .entry((*code).to_owned())
                        .or_insert_with(|| error(why));
                }
                operation.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
            } else {
                operation.security = None;
            }
        }
    }
}
