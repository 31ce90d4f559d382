//! Single sign-on, the host's half: an identity a provider plugin vouched for becomes a person,
//! a membership and a role. People are keyed by (provider, subject); the group → role mapping is
//! the organisation's data, re-applied at every login, so a group taken away at the identity
//! provider takes the role away at the next login. A plugin never names a role.

use infrapilot_identity::Role;
use infrapilot_store::{OrgId, Tx, UserRow};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::organisations::{self, OrgError};
use crate::{AccountError, AccountService, Client, Result};

/// What a person made by a single sign-on login has as a password hash: no password verifies
/// against it (it is no PHC string), so they sign in through their provider only.
pub const SSO_ONLY_PASSWORD: &str = "!sso-only";

/// One rule of a provider's mapping: members of `group` get `role` (admin, operator or viewer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRole {
    pub group: String,
    pub role: String,
}

/// A provider's mapping, as the organisation configured it.
#[derive(Debug, Clone)]
pub struct RoleMapping {
    pub rules: Vec<GroupRole>,
    /// For a person none of whose groups is mapped; none refuses them.
    pub default_role: Option<Role>,
}

impl RoleMapping {
    /// The role `groups` earn: the highest of the mapped ones (group names compare exactly),
    /// else the default. Never `super_admin`, whatever the rules say.
    pub fn role_for(&self, groups: &[String]) -> Option<Role> {
        let mapped = self
            .rules
            .iter()
            .filter(|rule| groups.iter().any(|g| g == &rule.group))
            .filter_map(|rule| Role::parse(&rule.role))
            .filter(|role| *role != Role::SuperAdmin)
            .max();
        mapped.or(self.default_role.filter(|r| *r != Role::SuperAdmin))
    }
}

/// Who signed in, as the provider reported it (already within the runtime's limits).
#[derive(Debug, Clone)]
pub struct SsoIdentity {
    pub subject: String,
    pub issuer: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// Further facts (`amr`, `acr` …): what the provider says about how the person signed in.
    pub attributes: Vec<(String, String)>,
}

/// What a login through a provider needs besides the identity provider's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsoMfa {
    /// The identity provider's word is enough.
    None,
    /// The identity provider must report a second factor for this login (OIDC `amr`/`acr`,
    /// SAML's authentication context); a login without one is refused.
    IdentityProvider,
    /// This host's TOTP after the identity provider; a person who has none enrols it then.
    Local,
}

impl SsoMfa {
    pub const ALL: [&'static str; 3] = ["none", "idp", "local"];

    pub fn parse(raw: &str) -> Option<SsoMfa> {
        match raw {
            "none" => Some(SsoMfa::None),
            "idp" => Some(SsoMfa::IdentityProvider),
            "local" => Some(SsoMfa::Local),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SsoMfa::None => "none",
            SsoMfa::IdentityProvider => "idp",
            SsoMfa::Local => "local",
        }
    }
}

/// `acr` values (OIDC) and authentication context classes (SAML) that name a second factor
/// wherever they come from; a provider adds its own (`mfa_acr_values`, e.g. Keycloak's levels).
pub const MULTI_FACTOR_ACR_VALUES: &[&str] = &[
    "http://schemas.microsoft.com/claims/multipleauthn",
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor-physical",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorUnregistered",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI",
    "phrh",
];

/// Authentication methods (RFC 8176) by the kind of factor they are.
fn factor_kind(method: &str) -> Option<&'static str> {
    match method {
        "pwd" | "pin" | "kba" => Some("knowledge"),
        "hwk" | "swk" | "sc" | "otp" | "sms" | "tel" => Some("possession"),
        "fpt" | "face" | "iris" | "retina" | "vbm" => Some("inherence"),
        _ => None,
    }
}

/// An attribute's values: a JSON array of strings, a JSON string, or the text itself.
fn attribute_values(identity: &SsoIdentity, name: &str) -> Vec<String> {
    identity
        .attributes
        .iter()
        .filter(|(n, _)| n == name)
        .flat_map(
            |(_, raw)| match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(serde_json::Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                Ok(serde_json::Value::String(one)) => vec![one],
                _ => vec![raw.clone()],
            },
        )
        .collect()
}

/// Whether the identity provider reports a second factor for this login: `amr` says `mfa` (or
/// names methods of two kinds, e.g. `pwd` and `otp`), or `acr` is one of the multi-factor
/// values (built in, or `extra_acr_values`).
pub fn second_factor_reported(identity: &SsoIdentity, extra_acr_values: &[String]) -> bool {
    let methods = attribute_values(identity, "amr");
    // Entra ID's SAML names the same thing by a URI.
    let multi_factor_method =
        |m: &String| m == "mfa" || m == "http://schemas.microsoft.com/claims/multipleauthn";
    let kinds: std::collections::BTreeSet<&str> =
        methods.iter().filter_map(|m| factor_kind(m)).collect();
    if methods.iter().any(multi_factor_method) || kinds.len() >= 2 {
        return true;
    }
    attribute_values(identity, "acr").iter().any(|acr| {
        MULTI_FACTOR_ACR_VALUES.contains(&acr.as_str()) || extra_acr_values.contains(acr)
    })
}

/// The provider a login came through.
#[derive(Debug, Clone)]
pub struct SsoProvider {
    pub id: String,
    pub name: String,
    pub mapping: RoleMapping,
    pub mfa: SsoMfa,
    /// `acr` values besides [`MULTI_FACTOR_ACR_VALUES`] that count as a second factor.
    pub mfa_acr_values: Vec<String>,
}

/// A login the host accepted: the person, and the role they hold now.
#[derive(Debug, Clone)]
pub struct SsoSignedIn {
    pub user: UserRow,
    pub role: Role,
    /// The person was made by this login (just-in-time provisioning).
    pub created: bool,
}

impl AccountService<'_> {
    /// Turns `identity` from `provider` into a person of `org` with the role the mapping gives
    /// them: the person the (provider, subject) pair names, or a new one (JIT). The membership's
    /// role follows the groups at every login (but the organisation's last admin stays one).
    /// Refused (and audited): no mapped group and no default role, no email for a new person, an
    /// email that belongs to an account not made by this provider, a disabled account.
    pub async fn sso_sign_in(
        &self,
        org: &OrgId,
        provider: &SsoProvider,
        identity: &SsoIdentity,
        max_members: Option<u64>,
        client: &Client,
    ) -> Result<SsoSignedIn> {
        let mut tx = self.store.write(org).await?;
        // Twenty first logins of one subject at once make one person.
        tx.serialize(&format!("sso:{}:{}", provider.id, identity.subject))
            .await?;
        let outcome = self
            .sso_person(&mut tx, provider, identity, max_members)
            .await;
        let detail = json!({
            "provider": provider.id,
            "provider_name": provider.name,
            "subject": identity.subject,
            "issuer": identity.issuer,
            "groups": identity.groups,
            "mfa_policy": provider.mfa.as_str(),
            // Under `local` the session waits for this host's second factor.
            "mfa_pending": provider.mfa == SsoMfa::Local,
            "second_factor_reported": second_factor_reported(identity, &provider.mfa_acr_values),
        });
        match outcome {
            Ok(signed_in) => {
                let actor = infrapilot_store::Actor {
                    org_id: org.clone(),
                    user_id: Some(signed_in.user.id.clone()),
                    label: signed_in.user.email.clone(),
                    ip: client.ip.clone(),
                    role: None,
                };
                let mut detail = detail;
                detail["role"] = json!(signed_in.role.as_str());
                detail["created"] = json!(signed_in.created);
                tx.append_audit(actor.event(
                    "sso.login",
                    format!("user:{}", signed_in.user.id),
                    "success",
                    detail,
                ))
                .await?;
                tx.commit().await?;
                Ok(signed_in)
            }
            Err(e) => {
                drop(tx);
                self.record_sso_refusal(org, provider, identity, client, &e.to_string(), detail)
                    .await;
                Err(e)
            }
        }
    }

    async fn sso_person(
        &self,
        tx: &mut Tx,
        provider: &SsoProvider,
        identity: &SsoIdentity,
        max_members: Option<u64>,
    ) -> Result<SsoSignedIn> {
        if provider.mfa == SsoMfa::IdentityProvider
            && !second_factor_reported(identity, &provider.mfa_acr_values)
        {
            return Err(AccountError::SsoRefused(format!(
                "this organisation requires a second factor at {}, and it reported none for this sign-in; sign in there with your second factor",
                provider.name
            )));
        }
        let role = provider.mapping.role_for(&identity.groups).ok_or_else(|| {
            AccountError::SsoRefused(format!(
                "none of your groups at {} gives a role in this organisation; ask an administrator",
                provider.name
            ))
        })?;
        let known = tx.sso_identity(&provider.id, &identity.subject).await?;
        let (person, created) = match known {
            // The person is the provider's subject at the issuer that vouched for them first: a
            // provider repointed at another identity provider vouches for no one it made before.
            Some(known) if known.issuer != identity.issuer => {
                return Err(AccountError::SsoRefused(format!(
                    "{} now names another identity provider ({}) than the one that vouched for you ({}); an administrator must sort this out",
                    provider.name, identity.issuer, known.issuer
                )));
            }
            Some(known) => {
                let person = tx.person_by_id(&known.user_id).await?.ok_or_else(|| {
                    AccountError::Internal("an SSO identity names a person who is gone".into())
                })?;
                tx.touch_sso_identity(&provider.id, &identity.subject)
                    .await?;
                (person, false)
            }
            None => {
                organisations::check_member_limit(tx, max_members, "provider")
                    .await
                    .map_err(org_error)?;
                (self.provision(tx, provider, identity, role).await?, true)
            }
        };
        if person.disabled {
            return Err(AccountError::Disabled);
        }
        let role = match tx.user_by_id(&person.id).await? {
            None => {
                // Removed from the organisation since: the identity provider vouches again.
                organisations::check_member_limit(tx, max_members, "provider")
                    .await
                    .map_err(org_error)?;
                tx.add_member(&person.id, role.as_str()).await?;
                role
            }
            Some(member) => {
                let current = Role::parse(&member.role).unwrap_or(Role::Viewer);
                if current == Role::SuperAdmin || current == role {
                    current
                } else if role < Role::Admin
                    && organisations::Organisations::keep_an_admin(tx, &member, "role")
                        .await
                        .is_err()
                {
                    // The organisation keeps its last admin; the mapping applies once another
                    // admin exists.
                    current
                } else {
                    tx.set_role(&person.id, role.as_str()).await?;
                    role
                }
            }
        };
        let user = tx
            .user_by_id(&person.id)
            .await?
            .ok_or_else(|| AccountError::Internal("the signed-in member vanished".into()))?;
        Ok(SsoSignedIn {
            user,
            role,
            created,
        })
    }

    /// Makes the person for a first login: their email must be the provider's to give, and
    /// belong to no account yet (an existing account is never taken over by an email claim).
    async fn provision(
        &self,
        tx: &mut Tx,
        provider: &SsoProvider,
        identity: &SsoIdentity,
        role: Role,
    ) -> Result<UserRow> {
        let email = identity
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| e.contains('@'))
            .ok_or_else(|| {
                AccountError::SsoRefused(format!(
                    "{} sent no email address for you; an account needs one",
                    provider.name
                ))
            })?
            .to_lowercase();
        if !identity.email_verified {
            return Err(AccountError::SsoRefused(format!(
                "{} does not vouch for your email address ({email}); verify it there first",
                provider.name
            )));
        }
        if tx.person_by_email(&email).await?.is_some() {
            return Err(AccountError::SsoRefused(format!(
                "an account with the email {email} exists already; sign in with its password"
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let name = identity
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(&email)
            .chars()
            .take(100)
            .collect::<String>();
        tx.insert_user(&infrapilot_store::NewUser {
            id: &id,
            email: &email,
            name: &name,
            password_hash: SSO_ONLY_PASSWORD,
            role: role.as_str(),
        })
        .await?;
        tx.insert_sso_identity(&provider.id, &identity.subject, &id, &identity.issuer)
            .await?;
        // The identity provider's word is not this host's proof: the address stays unverified
        // (it cannot accept invitations, or be added to organisations by it).
        tx.set_email_verified(&id, false).await?;
        tx.person_by_id(&id)
            .await?
            .ok_or_else(|| AccountError::Internal("the new person vanished".into()))
    }

    /// Audits a refused single sign-on login in its own transaction.
    async fn record_sso_refusal(
        &self,
        org: &OrgId,
        provider: &SsoProvider,
        identity: &SsoIdentity,
        client: &Client,
        reason: &str,
        mut detail: serde_json::Value,
    ) {
        detail["reason"] = json!(reason);
        let actor = infrapilot_store::Actor {
            org_id: org.clone(),
            user_id: None,
            label: format!("{}:{}", provider.name, identity.subject),
            ip: client.ip.clone(),
            role: None,
        };
        if let Ok(mut tx) = self.store.write(org).await
            && tx
                .append_audit(actor.event(
                    "sso.login",
                    format!("sso_provider:{}", provider.id),
                    "failure",
                    detail,
                ))
                .await
                .is_ok()
        {
            let _ = tx.commit().await;
        }
    }
}

fn org_error(e: OrgError) -> AccountError {
    match e {
        OrgError::MemberLimit { .. } => AccountError::SsoRefused(e.to_string()),
        OrgError::Store(e) => e.into(),
        other => AccountError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(rules: &[(&str, &str)], default_role: Option<Role>) -> RoleMapping {
        RoleMapping {
            rules: rules
                .iter()
                .map(|(g, r)| GroupRole {
                    group: (*g).into(),
                    role: (*r).into(),
                })
                .collect(),
            default_role,
        }
    }

    fn reporting(attributes: &[(&str, &str)]) -> SsoIdentity {
        SsoIdentity {
            subject: "s".into(),
            issuer: "https://idp".into(),
            email: None,
            email_verified: false,
            name: None,
            groups: Vec::new(),
            attributes: attributes
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_second_factor_is_what_amr_or_acr_say_and_nothing_else() {
        let none: Vec<String> = Vec::new();
        let yes = |a: &[(&str, &str)]| second_factor_reported(&reporting(a), &none);
        // Entra ID and Okta (OIDC), by RFC 8176 method names.
        assert!(yes(&[("amr", r#"["pwd","mfa"]"#)]));
        assert!(yes(&[("amr", r#"["pwd","otp"]"#)]));
        assert!(yes(&[("amr", r#"["hwk","fpt"]"#)]));
        assert!(yes(&[(
            "amr",
            r#"["http://schemas.microsoft.com/claims/multipleauthn"]"#
        )]));
        assert!(yes(&[("amr", "mfa")]), "a bare value");
        // One factor, however many methods of its kind.
        assert!(!yes(&[("amr", r#"["pwd"]"#)]));
        assert!(!yes(&[("amr", r#"["pwd","pin","kba"]"#)]));
        assert!(!yes(&[("amr", r#"["otp"]"#)]));
        assert!(!yes(&[("amr", r#"["MFA"]"#)]), "names compare exactly");
        assert!(!yes(&[("amr", r#"{"mfa":true}"#)]));
        assert!(!yes(&[]));
        // Other attributes never count.
        assert!(!yes(&[("mfa", "true"), ("groups", r#"["mfa"]"#)]));
        // acr: the built-in multi-factor classes, and a provider's own.
        assert!(yes(&[(
            "acr",
            "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
        )]));
        assert!(yes(&[("acr", r#""phrh""#)]));
        assert!(!yes(&[(
            "acr",
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
        )]));
        assert!(!yes(&[("acr", "2")]));
        assert!(second_factor_reported(
            &reporting(&[("acr", r#""2""#)]),
            &["2".to_owned()]
        ));
    }

    #[test]
    fn the_highest_mapped_role_wins_and_never_super_admin() {
        let m = mapping(
            &[
                ("devs", "operator"),
                ("ops", "admin"),
                ("root", "super_admin"),
            ],
            None,
        );
        let groups = |g: &[&str]| g.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(m.role_for(&groups(&["devs"])), Some(Role::Operator));
        assert_eq!(m.role_for(&groups(&["devs", "ops"])), Some(Role::Admin));
        assert_eq!(m.role_for(&groups(&["root"])), None);
        assert_eq!(m.role_for(&groups(&["Devs"])), None, "exact names");
        assert_eq!(m.role_for(&[]), None);
        let m = mapping(&[("ops", "admin")], Some(Role::Viewer));
        assert_eq!(m.role_for(&groups(&["else"])), Some(Role::Viewer));
        let m = mapping(&[], Some(Role::SuperAdmin));
        assert_eq!(m.role_for(&[]), None);
    }
}
