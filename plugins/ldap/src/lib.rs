//! Single sign-on with an LDAP directory (OpenLDAP, Active Directory …): the person types their
//! directory username and password on InfraPilot's sign-in page; this plugin finds their entry
//! with the service account (the host escapes the username into the filter), binds as that
//! entry with the password (the directory decides), and reads their groups — from `memberOf`,
//! or by a group search (Active Directory's in-chain rule for nested groups). Everything goes
//! through the host's `ldap` capability: TLS only, destinations checked, an empty password
//! refused. The plugin reports groups; the host maps them to roles.

use infrapilot_plugin_sdk::sso::ldap::{
    self, Credentials, Entry, LdapError, Scope, SearchRequest, Server,
};
use infrapilot_plugin_sdk::sso::{
    Identity, LoginCallback, LoginError, LoginRequest, LoginStart, PluginError, SsoProvider,
    config, log,
};
use serde::Deserialize;

/// Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: membership through nested groups.
const AD_IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// Groups one group search may return.
const MAX_GROUPS: u32 = 500;
/// Group names and DNs reported for one person (the host's limit is 256).
const MAX_REPORTED_GROUPS: usize = 250;

#[derive(Deserialize)]
struct Settings {
    #[serde(default = "openldap")]
    preset: String,
    url: String,
    ca_pem: Option<String>,
    bind_dn: String,
    user_base: String,
    user_filter: Option<String>,
    #[serde(default = "mail")]
    email_attribute: String,
    name_attribute: Option<String>,
    #[serde(default)]
    emails_verified: bool,
    #[serde(default = "member_of")]
    group_lookup: String,
    group_base: Option<String>,
    group_filter: Option<String>,
    #[serde(default = "cn")]
    group_name_attribute: String,
}

fn openldap() -> String {
    "openldap".into()
}
fn mail() -> String {
    "mail".into()
}
fn member_of() -> String {
    "member_of".into()
}
fn cn() -> String {
    "cn".into()
}

impl Settings {
    fn load() -> Result<Settings, String> {
        let settings: Settings =
            serde_json::from_str(&config::settings()).map_err(|e| format!("settings: {e}"))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), String> {
        if !matches!(self.preset.as_str(), "openldap" | "active_directory") {
            return Err(format!(
                "preset: {:?} is not openldap or active_directory",
                self.preset
            ));
        }
        let url = self.url.trim();
        if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
            return Err("url: ldap://host (StartTLS) or ldaps://host".into());
        }
        if self.bind_dn.trim().is_empty() {
            return Err("bind_dn: the service account's DN".into());
        }
        if self.user_base.trim().is_empty() {
            return Err("user_base: where the people are (a DN)".into());
        }
        if !self.user_filter().contains("{0}") {
            return Err("user_filter: must contain {0} (the username)".into());
        }
        match self.group_lookup.as_str() {
            "member_of" => {}
            "group_search" => {
                if self
                    .group_base
                    .as_deref()
                    .is_none_or(|b| b.trim().is_empty())
                {
                    return Err(
                        "group_base: where the groups are (a DN), for a group search".into(),
                    );
                }
                if !self.group_filter().contains("{0}") {
                    return Err("group_filter: must contain {0} (the person's DN)".into());
                }
            }
            other => {
                return Err(format!(
                    "group_lookup: {other:?} is not member_of or group_search"
                ));
            }
        }
        Ok(())
    }

    fn active_directory(&self) -> bool {
        self.preset == "active_directory"
    }

    fn user_filter(&self) -> String {
        match self.user_filter.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => f.to_owned(),
            _ if self.active_directory() => "(&(objectClass=user)(sAMAccountName={0}))".into(),
            _ => "(&(objectClass=inetOrgPerson)(uid={0}))".into(),
        }
    }

    fn group_filter(&self) -> String {
        match self.group_filter.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => f.to_owned(),
            _ if self.active_directory() => {
                format!("(&(objectClass=group)(member:{AD_IN_CHAIN}:={{0}}))")
            }
            _ => "(member={0})".into(),
        }
    }

    fn name_attribute(&self) -> String {
        match self.name_attribute.as_deref().map(str::trim) {
            Some(a) if !a.is_empty() => a.to_owned(),
            _ if self.active_directory() => "displayName".into(),
            _ => "cn".into(),
        }
    }

    fn server(&self) -> Server {
        Server {
            url: self.url.trim().to_owned(),
            ca_pem: self.ca_pem.clone().filter(|p| !p.trim().is_empty()),
            timeout_ms: None,
        }
    }

    /// The directory as the host pins it: `ldap://<host>`, the same for StartTLS and LDAPS and
    /// any port of that host (a change of transport is not another identity provider).
    fn issuer(&self) -> String {
        let rest = self
            .url
            .trim()
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        format!("ldap://{}", host.to_ascii_lowercase())
    }

    fn service_account(&self) -> Result<Credentials, String> {
        let password = config::secret("bind_password")
            .map_err(|_| "bind_password: the service account's password is not set".to_owned())?;
        Ok(Credentials {
            dn: self.bind_dn.trim().to_owned(),
            password,
        })
    }
}

/// A directory failure as a login error: settings problems name the field, the rest is the
/// directory being unreachable or refusing the service account.
fn unavailable(what: &str, e: LdapError) -> LoginError {
    match e {
        LdapError::InvalidRequest(m) => LoginError::InvalidSettings(format!("{what}: {m}")),
        LdapError::InvalidCredentials => LoginError::InvalidSettings(format!(
            "bind_dn: the directory refused the service account ({what})"
        )),
        LdapError::Denied(m) => {
            LoginError::Unavailable(format!("{what}: refused by the host: {m}"))
        }
        LdapError::Failed(m) | LdapError::Transport(m) => {
            LoginError::Unavailable(format!("{what}: {m}"))
        }
        LdapError::Timeout => LoginError::Unavailable(format!("{what}: the directory timed out")),
        LdapError::TooLarge => LoginError::Unavailable(format!("{what}: too many entries")),
    }
}

fn wrong() -> LoginError {
    LoginError::Rejected("wrong username or password".into())
}

/// The first value of `name` (attribute names are case-insensitive).
fn first<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    values(entry, name).next()
}

fn values<'a>(entry: &'a Entry, name: &str) -> impl Iterator<Item = &'a str> {
    entry
        .attributes
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.iter().map(String::as_str))
}

/// The value of a DN's first RDN (`cn=admins,ou=groups,…` → `admins`), unescaped.
fn leading_rdn_value(dn: &str) -> Option<String> {
    let mut value = String::new();
    let mut chars = dn.chars();
    // Skip the attribute type.
    for c in chars.by_ref() {
        if c == '=' {
            break;
        }
    }
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?),
            ',' | '+' => break,
            other => value.push(other),
        }
    }
    let value = value.trim().to_owned();
    (!value.is_empty()).then_some(value)
}

fn groups(
    settings: &Settings,
    service: &Credentials,
    person: &Entry,
) -> Result<Vec<String>, LoginError> {
    let dns: Vec<(String, Option<String>)> = if settings.group_lookup == "group_search" {
        let found = ldap::search(
            &settings.server(),
            service,
            &SearchRequest {
                base: settings
                    .group_base
                    .clone()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                scope: Scope::Subtree,
                filter: settings.group_filter(),
                args: vec![person.dn.clone()],
                attributes: vec![settings.group_name_attribute.clone()],
                size_limit: MAX_GROUPS,
            },
        )
        .map_err(|e| unavailable("group search", e))?;
        found
            .iter()
            .map(|g| {
                (
                    g.dn.clone(),
                    first(g, &settings.group_name_attribute).map(str::to_owned),
                )
            })
            .collect()
    } else {
        values(person, "memberOf")
            .map(|dn| (dn.to_owned(), None))
            .collect()
    };
    // A group is reported by its DN; by its name too only when it lies under the groups base
    // DN, so that a group of the same name elsewhere in the directory (a delegated or
    // self-service OU) cannot match a mapping rule written for the real one.
    let base = settings
        .group_base
        .as_deref()
        .map(|b| b.trim().to_ascii_lowercase())
        .filter(|b| !b.is_empty());
    let mut names = Vec::new();
    let mut dns_only = Vec::new();
    for (dn, name) in dns {
        let lower = dn.to_ascii_lowercase();
        let under_base = base
            .as_deref()
            .is_some_and(|b| lower.ends_with(&format!(",{b}")));
        if under_base && let Some(name) = name.or_else(|| leading_rdn_value(&dn)) {
            names.push(name);
        }
        dns_only.push(dn);
    }
    names.sort();
    names.dedup();
    dns_only.sort();
    dns_only.dedup();
    names.extend(dns_only);
    if names.len() > MAX_REPORTED_GROUPS {
        // The host takes a bounded list; names first, then DNs.
        log::log(
            log::Level::Warn,
            &format!(
                "{} groups for one person; the first {MAX_REPORTED_GROUPS} are reported",
                names.len()
            ),
        );
        names.truncate(MAX_REPORTED_GROUPS);
    }
    Ok(names)
}

struct LdapProvider;

impl SsoProvider for LdapProvider {
    fn validate() -> Result<(), PluginError> {
        let settings = Settings::load().map_err(PluginError::InvalidSettings)?;
        let service = settings
            .service_account()
            .map_err(PluginError::InvalidSettings)?;
        // The service account must work now, not at the first person's sign-in.
        ldap::bind(&settings.server(), &service).map_err(|e| match unavailable("bind", e) {
            LoginError::InvalidSettings(m) => PluginError::InvalidSettings(m),
            LoginError::Unavailable(m) => {
                PluginError::InvalidSettings(format!("url: the directory cannot be used: {m}"))
            }
            other => PluginError::Failed(format!("{other:?}")),
        })
    }

    fn begin_login(_request: LoginRequest) -> Result<LoginStart, LoginError> {
        Err(LoginError::Unsupported)
    }

    fn complete_login(_callback: LoginCallback) -> Result<Identity, LoginError> {
        Err(LoginError::Unsupported)
    }

    fn check_password(username: String, password: String) -> Result<Identity, LoginError> {
        let username = username.trim().to_owned();
        if username.is_empty() || username.len() > 256 || password.is_empty() {
            return Err(wrong());
        }
        let settings = Settings::load().map_err(LoginError::InvalidSettings)?;
        let service = settings
            .service_account()
            .map_err(LoginError::InvalidSettings)?;
        let name_attribute = settings.name_attribute();
        let mut attributes = vec![
            settings.email_attribute.clone(),
            name_attribute.clone(),
            "entryUUID".to_owned(),
            "objectGUID".to_owned(),
        ];
        if settings.group_lookup == "member_of" {
            attributes.push("memberOf".into());
        }
        let found = match ldap::search(
            &settings.server(),
            &service,
            &SearchRequest {
                base: settings.user_base.trim().to_owned(),
                scope: Scope::Subtree,
                filter: settings.user_filter(),
                args: vec![username.clone()],
                attributes,
                size_limit: 2,
            },
        ) {
            Ok(found) => found,
            Err(LdapError::TooLarge) => {
                return Err(LoginError::Rejected(
                    "the username matches more than one directory entry".into(),
                ));
            }
            Err(e) => return Err(unavailable("user search", e)),
        };
        let person = match found.as_slice() {
            [] => return Err(wrong()),
            [one] => one,
            _ => {
                return Err(LoginError::Rejected(
                    "the username matches more than one directory entry".into(),
                ));
            }
        };
        match ldap::bind(
            &settings.server(),
            &Credentials {
                dn: person.dn.clone(),
                password,
            },
        ) {
            Ok(()) => {}
            Err(LdapError::InvalidCredentials | LdapError::InvalidRequest(_)) => {
                return Err(wrong());
            }
            Err(e) => return Err(unavailable("bind", e)),
        }
        let groups = groups(&settings, &service, person)?;
        // A stable id survives renames and moves: entryUUID (OpenLDAP), objectGUID (AD), else
        // the DN (case-insensitive, so lowercased).
        let subject = first(person, "entryUUID")
            .or_else(|| first(person, "objectGUID"))
            .map(str::to_owned)
            .unwrap_or_else(|| person.dn.to_lowercase());
        Ok(Identity {
            subject,
            issuer: settings.issuer(),
            email: first(person, &settings.email_attribute).map(str::to_owned),
            email_verified: settings.emails_verified,
            name: first(person, &name_attribute).map(str::to_owned),
            groups,
            attributes: vec![("dn".into(), person.dn.clone())],
        })
    }
}

infrapilot_plugin_sdk::export_sso_provider!(LdapProvider);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leading_rdn_names_a_group() {
        assert_eq!(
            leading_rdn_value("cn=admins,ou=groups,dc=example,dc=test").as_deref(),
            Some("admins")
        );
        assert_eq!(
            leading_rdn_value(r"CN=Ops\, Berlin,OU=Groups,DC=corp").as_deref(),
            Some("Ops, Berlin")
        );
        assert_eq!(leading_rdn_value("cn=,dc=x"), None);
    }
}
