//! Account workflows as a service: password sign-in (throttled per account and per address,
//! counted before Argon2 runs, a bounded number of anonymous checks at once), the MFA step,
//! session issuance, refresh-token rotation with reuse detection, sign-out, password changes,
//! TOTP enrolment and backup codes. Routes parse a request, call [`AccountService`] with the
//! [`Client`] (and the [`Actor`] once signed in) and map [`AccountError`]; every change writes its
//! audit event in the transaction that makes it (a failed sign-in, which changes nothing, in one
//! of its own). Single sign-on opens its sessions through
//! [`AccountService::sign_in`], the one place a session is issued.

pub mod organisations;
pub mod signup;
pub mod sso;

pub use organisations::{
    IssuedInvitation, OrgCreation, OrgError, Organisations, check_member_limit,
};

use std::sync::Arc;
use std::time::Duration;

use infrapilot_identity::{
    IdentityError, IssuedToken, LoginThrottle, Role, SecretBox, ThrottleDecision, TokenKind,
    TotpEnrollment, backup_code_hash, dummy_password_hash, generate_backup_codes, hash_password,
    hash_token, issue_token, verify_password, verify_totp,
};
use infrapilot_store::{
    Actor, NewAuditEvent, NewMfaChallenge, NewSession, NewUser, OrgId, Store, StoreError, Tx,
    UserRow, now_ms,
};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long the second login step may take.
const MFA_CHALLENGE_TTL_MS: i64 = 5 * 60 * 1000;
/// Wrong codes accepted on one MFA challenge before it is void.
const MFA_MAX_ATTEMPTS: i64 = 5;
/// How long an anonymous password check waits for its turn before the caller is told to retry.
const ANONYMOUS_CHECK_WAIT: Duration = Duration::from_secs(2);
/// The purpose TOTP seeds are sealed under.
const TOTP_SEAL_PURPOSE: &str = "totp-seed";
/// The longest password checked (longer ones are refused before Argon2).
const MAX_PASSWORD_CHARS: usize = 1024;

/// Why an account workflow refused or failed. Nothing of the refused change was stored.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// `field` is wrong (a password re-check, an MFA code at enrolment).
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The credentials or the token do not sign anyone in; `field` names the one at fault.
    #[error("{message}")]
    Unauthorized {
        field: Option<String>,
        message: String,
    },
    /// Too many failed attempts on the account or from the address.
    #[error("too many failed attempts; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// Too many anonymous password checks at once.
    #[error("too many sign-ins at once; try again in a second")]
    Busy,
    #[error("this account is disabled")]
    Disabled,
    /// The person signed up but has not followed the mailed verification link.
    #[error("verify your email first: follow the link we mailed you")]
    EmailUnverified,
    /// The account's state does not allow it (MFA already on, not on, no enrolment started).
    #[error("{0}")]
    Conflict(String),
    #[error("no such active session of yours")]
    NoSuchSession,
    #[error("no such user")]
    NoSuchUser,
    #[error("a user with this email exists")]
    EmailTaken,
    /// The change would leave the organisation without an enabled super_admin; `field` is the
    /// request's field that asked for it.
    #[error("this is the last enabled super_admin; promote another user first")]
    LastSuperAdmin { field: String },
    /// The change would leave the organisation without an enabled admin; `field` asked for it.
    #[error("this is the organisation's last enabled admin; make another member admin first")]
    LastAdmin { field: String },
    /// A single sign-on login the host refuses (no mapped group, an email that belongs to
    /// another account …); the text says why, for the person who tried.
    #[error("{0}")]
    SsoRefused(String),
    /// Every organisation of the person requires single sign-on of them: no local sign-in.
    #[error("{0}")]
    SsoRequired(String),
    #[error("you cannot delete your own account")]
    CannotDeleteSelf,
    #[error("setup is done: users exist already; sign in")]
    SetupDone,
    #[error(
        "setup through the API is closed on this host; create the first user with `infrapilot admin create-user`"
    )]
    SetupClosed,
    #[error("the setup code is wrong; it is in the server's log and in <data_dir>/setup-code")]
    WrongSetupCode,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A secret that does not open, a task that did not finish: a bug or damage.
    #[error("{0}")]
    Internal(String),
}

impl AccountError {
    fn unauthorized(field: Option<&str>, message: &str) -> AccountError {
        AccountError::Unauthorized {
            field: field.map(str::to_owned),
            message: message.to_owned(),
        }
    }

    fn account_gone() -> AccountError {
        AccountError::unauthorized(None, "the account no longer exists")
    }
}

type Result<T, E = AccountError> = std::result::Result<T, E>;

/// What [`reset_second_factor`] found.
pub(crate) enum SecondFactorReset {
    Done,
    NoneToReset,
}

/// Turns off `user_id`'s second factor in `tx` (TOTP, pending seed, backup codes), ends their
/// sessions and records `mfa.reset` — serialised with the person's other second-factor steps.
/// The caller checked who may, and commits.
pub(crate) async fn reset_second_factor(
    tx: &mut Tx,
    actor: &Actor,
    user_id: &str,
) -> std::result::Result<SecondFactorReset, StoreError> {
    tx.serialize_for_person(user_id, "mfa").await?;
    let Some(person) = tx.person_by_id(user_id).await? else {
        return Ok(SecondFactorReset::NoneToReset);
    };
    if !person.totp_enabled && person.totp_secret.is_none() {
        return Ok(SecondFactorReset::NoneToReset);
    }
    tx.disable_totp(user_id).await?;
    let sessions_ended = tx
        .revoke_user_sessions(user_id, "second factor reset", None)
        .await?;
    tx.append_audit(actor.event(
        "mfa.reset",
        format!("user:{user_id}"),
        "success",
        json!({"email": person.email, "was_enabled": person.totp_enabled,
               "sessions_ended": sessions_ended}),
    ))
    .await?;
    Ok(SecondFactorReset::Done)
}

/// Which sealed seed a step was issued with (the SHA-256 of its sealed bytes, hex).
fn seed_fingerprint(sealed: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(sealed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The organisation whose audit chain records what concerns the host rather than one
/// organisation: the first-run claim, a sign-in attempt for an email no account has. The default
/// organisation, the host's own (ARCHITECTURE.md, "Tenancy").
fn host_chain() -> OrgId {
    OrgId::default_org()
}

/// The caller of a request: its address (as the audit trail records it), its user agent (kept
/// with a session) and the key its attempts are throttled under (an IPv6 address's /64).
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: String,
    pub user_agent: String,
    pub throttle_key: String,
}

/// A session's tokens: the access token and the refresh token that rotates it.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// How a right password ends: a session, or a second step when the account has MFA.
#[derive(Debug)]
pub enum LoginOutcome {
    Signed(TokenPair),
    MfaRequired {
        mfa_token: String,
        /// The person has no authenticator yet and the login requires one: this step enrols
        /// it (the seed is pending until the step's code confirms it).
        enrollment: Option<TotpEnrollment>,
    },
}

/// A second step passed: the session, and the backup codes of an authenticator it enrolled
/// (shown once).
#[derive(Debug)]
pub struct MfaVerified {
    pub pair: TokenPair,
    pub backup_codes: Option<Vec<String>>,
}

/// Where a signed-in user's MFA stands.
#[derive(Debug)]
pub struct MfaStatus {
    pub enabled: bool,
    /// An enrolment was started but not confirmed yet.
    pub pending: bool,
    pub backup_codes_remaining: i64,
}

/// Checks a password on the blocking pool (Argon2 takes tens of milliseconds by design).
pub async fn password_matches(stored_hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&stored_hash, &password))
        .await
        .unwrap_or(false)
}

/// Like [`password_matches`], holding `turn` until the hash is done: a caller that hangs up
/// mid-check does not free its turn while Argon2 still runs.
async fn password_matches_in_turn(
    turn: OwnedSemaphorePermit,
    stored_hash: String,
    password: String,
) -> bool {
    tokio::task::spawn_blocking(move || {
        let matched = verify_password(&stored_hash, &password);
        drop(turn);
        matched
    })
    .await
    .unwrap_or(false)
}

/// Hashes a new password on the blocking pool.
pub async fn new_password_hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Internal(e.to_string()))?
        .map_err(AccountError::from)
}

/// A user to create, its fields already validated.
#[derive(Debug)]
pub struct NewAccount {
    pub email: String,
    pub password: String,
    pub name: String,
    pub role: Role,
}

/// What an administrator changes on a user; `None` leaves it. Fields already validated.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// A new password: the user's sessions and API tokens end.
    pub password: Option<String>,
}

/// Creates a user and its audit event (`action`: `user.create`, `setup.complete`, or the
/// single sign-on provisioning's) in `tx`, which the caller commits. Used by the API, the
/// first-run setup and the command line.
pub async fn create_user(
    tx: &mut Tx,
    actor: &Actor,
    account: NewAccount,
    action: &str,
) -> Result<UserRow> {
    if account.role == Role::SuperAdmin && tx.org_id() != infrapilot_store::DEFAULT_ORG_ID {
        return Err(AccountError::Invalid {
            field: "role".into(),
            message: "super_admin is the host operator's role, held in the default organisation only; use admin, operator or viewer".into(),
        });
    }
    let password_hash = new_password_hash(account.password).await?;
    let id = uuid::Uuid::new_v4().to_string();
    tx.insert_user(&NewUser {
        id: &id,
        email: &account.email,
        name: &account.name,
        password_hash: &password_hash,
        role: account.role.as_str(),
    })
    .await
    .map_err(|e| {
        if e.is_unique_violation() {
            AccountError::EmailTaken
        } else {
            e.into()
        }
    })?;
    tx.append_audit(actor.event(
        action,
        format!("user:{id}"),
        "success",
        json!({"email": account.email, "role": account.role.as_str()}),
    ))
    .await?;
    tx.user_by_id(&id)
        .await?
        .ok_or_else(|| AccountError::Internal("created user vanished".into()))
}

/// Creates a user in its own transaction: the first one (`only_if_empty`: the first-run setup,
/// `setup.complete`, refused once users exist, serialised against a parallel claim) or another
/// (`user.create`, the command line).
pub async fn create_user_now(
    store: &Store,
    actor: &Actor,
    account: NewAccount,
    only_if_empty: bool,
) -> Result<UserRow> {
    let mut tx = store.write(&host_chain()).await?;
    if only_if_empty {
        tx.lock_setup().await?;
        if tx.count_users().await? > 0 {
            return Err(AccountError::SetupDone);
        }
    }
    let action = if only_if_empty {
        "setup.complete"
    } else {
        "user.create"
    };
    let user = create_user(&mut tx, actor, account, action).await?;
    tx.commit().await?;
    Ok(user)
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    use sha2::Digest;
    sha2::Sha256::digest(a.as_bytes()) == sha2::Sha256::digest(b.as_bytes())
}

/// Refuses a change that would leave the organisation without an enabled super_admin.
async fn keep_a_super_admin(tx: &mut Tx, user: &UserRow, field: &str) -> Result<()> {
    // Two parallel demotions of the last two super_admins must not both see "two left".
    tx.serialize("super_admins").await?;
    if user.role == Role::SuperAdmin.as_str()
        && !user.disabled
        && tx.count_active_with_role(Role::SuperAdmin.as_str()).await? <= 1
    {
        return Err(AccountError::LastSuperAdmin {
            field: field.to_owned(),
        });
    }
    Ok(())
}

/// Refuses when `user` is the organisation's last enabled admin and the change takes that away.
async fn keep_an_admin(tx: &mut Tx, user: &UserRow, field: &str) -> Result<()> {
    match organisations::Organisations::keep_an_admin(tx, user, field).await {
        Ok(()) => Ok(()),
        Err(organisations::OrgError::LastAdmin { field }) => Err(AccountError::LastAdmin { field }),
        Err(organisations::OrgError::Store(e)) => Err(e.into()),
        Err(e) => Err(AccountError::Internal(e.to_string())),
    }
}

async fn find_user(tx: &mut Tx, user_id: &str) -> Result<UserRow> {
    tx.user_by_id(user_id)
        .await?
        .ok_or(AccountError::NoSuchUser)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The account workflows over the host's store, secrets and throttles.
pub struct AccountService<'a> {
    pub store: &'a Store,
    /// Seals TOTP seeds.
    pub secrets: &'a SecretBox,
    /// Failed attempts per account (its e-mail address).
    pub account_throttle: &'a LoginThrottle,
    /// Failed attempts per client address.
    pub ip_throttle: &'a LoginThrottle,
    /// Turns at Argon2 for callers without credentials.
    pub anonymous_checks: &'a Arc<Semaphore>,
    pub access_token_ttl: Duration,
    pub session_ttl: Duration,
}

impl AccountService<'_> {
    /// Counts a password (or code) attempt against the account and the client's address before
    /// the check runs, so parallel attempts cannot all get under the limit.
    fn count_attempt(&self, account_key: &str, client: &Client) -> Result<()> {
        if let ThrottleDecision::Deny { retry_after } =
            self.account_throttle.try_attempt(account_key)
        {
            return Err(AccountError::TooManyAttempts {
                retry_after_secs: retry_after.as_secs().max(1),
            });
        }
        if let ThrottleDecision::Deny { retry_after } =
            self.ip_throttle.try_attempt(&client.throttle_key)
        {
            self.account_throttle.forgive_one(account_key);
            return Err(AccountError::TooManyAttempts {
                retry_after_secs: retry_after.as_secs().max(1),
            });
        }
        Ok(())
    }

    /// The attempt counted by [`Self::count_attempt`] succeeded: the account's failures are
    /// cleared and the address's count is taken back.
    fn attempt_succeeded(&self, account_key: &str, client: &Client) {
        self.account_throttle.record_success(account_key);
        self.ip_throttle.forgive_one(&client.throttle_key);
    }

    /// The attempt counted by [`Self::count_attempt`] never reached its check.
    fn attempt_not_made(&self, account_key: &str, client: &Client) {
        self.account_throttle.forgive_one(account_key);
        self.ip_throttle.forgive_one(&client.throttle_key);
    }

    /// Counts a directory sign-in attempt (an SSO provider that checks passwords) against the
    /// username at that provider and the client's address, like a local sign-in; the key it
    /// returns settles the attempt.
    pub fn count_directory_attempt(
        &self,
        provider_id: &str,
        username: &str,
        client: &Client,
    ) -> Result<String> {
        let key = format!("sso:{provider_id}:{}", username.trim().to_lowercase());
        self.count_attempt(&key, client)?;
        Ok(key)
    }

    /// The directory accepted the attempt counted under `key`.
    pub fn directory_attempt_succeeded(&self, key: &str, client: &Client) {
        self.attempt_succeeded(key, client);
    }

    /// The directory could not be asked: the attempt counted under `key` is taken back.
    pub fn directory_attempt_not_made(&self, key: &str, client: &Client) {
        self.attempt_not_made(key, client);
    }

    /// A turn at Argon2 for a caller without credentials: a bounded number run at once.
    async fn anonymous_check_turn(&self) -> Result<OwnedSemaphorePermit> {
        let semaphore = self.anonymous_checks.clone();
        match tokio::time::timeout(ANONYMOUS_CHECK_WAIT, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(AccountError::Busy),
        }
    }

    /// Re-checks a signed-in user's password (MFA changes, password change), throttled like
    /// a login; a wrong one is an [`AccountError::Invalid`] naming `field`.
    async fn recheck_password(
        &self,
        user: &UserRow,
        client: &Client,
        field: &str,
        password: String,
    ) -> Result<()> {
        let key = user.email.clone();
        self.count_attempt(&key, client)?;
        if !password.is_empty()
            && password.len() <= MAX_PASSWORD_CHARS
            && password_matches(user.password_hash.clone(), password).await
        {
            self.attempt_succeeded(&key, client);
            Ok(())
        } else {
            Err(AccountError::Invalid {
                field: field.to_owned(),
                message: format!("{field} is wrong"),
            })
        }
    }

    /// The organisation whose chain records a person's sign-ins (and their failures): their
    /// oldest membership's, or the host's for a person who belongs to none.
    async fn home_chain(&self, user_id: &str) -> Result<OrgId> {
        let memberships = self.store.lookup().await?.memberships(user_id).await?;
        Ok(memberships
            .first()
            .and_then(|m| OrgId::parse(&m.org_id))
            .unwrap_or_else(host_chain))
    }

    /// Records a failed sign-in in its own transaction (a failure to record is logged): in the
    /// person's home chain when the email is an account's, else the host's.
    async fn record_login_failure(
        &self,
        email: &str,
        user_id: Option<&str>,
        client: &Client,
        reason: &str,
    ) {
        let target: String = format!("user:{}", email.chars().take(254).collect::<String>());
        let event =
            anonymous(client).event("auth.login", target, "failure", json!({"reason": reason}));
        let chain = match user_id {
            Some(id) => self.home_chain(id).await.unwrap_or_else(|_| host_chain()),
            None => host_chain(),
        };
        self.record_standalone(&chain, event).await;
    }

    async fn record_standalone(&self, org_id: &OrgId, event: NewAuditEvent) {
        if let Err(e) = self.store.record_audit(org_id, event).await {
            tracing::error!(error = %e, "could not record audit event");
        }
    }

    /// Signs in with an e-mail address (already well-formed) and a password: a session, or the
    /// MFA step's token when the account has MFA.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client: &Client,
    ) -> Result<LoginOutcome> {
        self.count_attempt(email, client)?;
        let turn = match self.anonymous_check_turn().await {
            Ok(turn) => turn,
            Err(e) => {
                self.attempt_not_made(email, client);
                return Err(e);
            }
        };
        // Look the user up and check the password outside the write lock: Argon2 is slow on
        // purpose.
        let user = self
            .store
            .read(&host_chain())
            .await?
            .person_by_email(email)
            .await?;
        let stored_hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| dummy_password_hash().to_owned());
        let password_ok =
            password_matches_in_turn(turn, stored_hash, password).await && user.is_some();
        let user = match user {
            Some(u) if password_ok => u,
            known => {
                self.record_login_failure(
                    email,
                    known.as_ref().map(|u| u.id.as_str()),
                    client,
                    "bad credentials",
                )
                .await;
                return Err(AccountError::unauthorized(
                    None,
                    "email or password is wrong",
                ));
            }
        };
        if user.disabled {
            self.record_login_failure(email, Some(&user.id), client, "account disabled")
                .await;
            return Err(AccountError::Disabled);
        }
        if !user.email_verified {
            self.attempt_not_made(email, client);
            self.record_login_failure(email, Some(&user.id), client, "email not verified")
                .await;
            return Err(AccountError::EmailUnverified);
        }
        if let Err(e) = self.local_sign_in_allowed(&user).await {
            self.attempt_not_made(email, client);
            self.record_login_failure(email, Some(&user.id), client, "single sign-on required")
                .await;
            return Err(e);
        }
        if user.totp_enabled {
            // The password was right, but the account's failures stand until the second factor
            // is: a known password must not reset the count between rounds of code guesses.
            self.attempt_not_made(email, client);
        } else {
            self.attempt_succeeded(email, client);
        }
        let mut tx = self.store.write(&self.home_chain(&user.id).await?).await?;
        if user.totp_enabled {
            let challenge = issue_token(TokenKind::MfaChallenge)?;
            tx.insert_mfa_challenge(&NewMfaChallenge {
                token_hash: &challenge.hash,
                user_id: &user.id,
                expires_at: now_ms() + MFA_CHALLENGE_TTL_MS,
                sso: None,
                enrolling: None,
            })
            .await?;
            tx.commit().await?;
            return Ok(LoginOutcome::MfaRequired {
                mfa_token: challenge.secret,
                enrollment: None,
            });
        }
        let pair = self
            .sign_in(tx, &user, client, json!({"mfa": false}))
            .await?;
        Ok(LoginOutcome::Signed(pair))
    }

    /// The MFA step of a login: the challenge token from [`Self::login`] (or a single sign-on
    /// login's, [`Self::finish_sso_login`]) and a TOTP or backup code; or, when the step enrols
    /// the person's first authenticator, a code from it.
    pub async fn verify_mfa(
        &self,
        mfa_token: &str,
        code: &str,
        client: &Client,
    ) -> Result<MfaVerified> {
        let challenge_hash = hash_token(mfa_token);
        // The challenge first (challenges are personal), so that the transaction is in the
        // organisation whose chain records the sign-in: the provider's after single sign-on,
        // else the person's home.
        let known = self
            .store
            .read(&host_chain())
            .await?
            .mfa_challenge(&challenge_hash)
            .await?;
        let chain = match &known {
            Some(c) => match c.sso_org_id.as_deref().and_then(OrgId::parse) {
                Some(org) => org,
                None => self.home_chain(&c.user_id).await?,
            },
            None => host_chain(),
        };
        let mut tx = self.store.write(&chain).await?;
        // Parallel codes on one challenge are checked one after another, so its attempt limit
        // holds; and one person's steps too (two enrolments, or a code used twice at once).
        tx.serialize(&format!("mfa:{challenge_hash}")).await?;
        if let Some(c) = &known {
            tx.serialize_for_person(&c.user_id, "mfa").await?;
        }
        let challenge = tx
            .mfa_challenge(&challenge_hash)
            .await?
            .filter(|c| c.expires_at > now_ms() && c.attempts < MFA_MAX_ATTEMPTS)
            .ok_or_else(|| {
                AccountError::unauthorized(
                    Some("mfa_token"),
                    "the sign-in step expired; sign in again",
                )
            })?;
        let user = tx
            .person_by_id(&challenge.user_id)
            .await?
            .filter(|u| !u.disabled && u.totp_enabled != challenge.enrolling)
            .ok_or_else(|| AccountError::unauthorized(Some("mfa_token"), "sign in again"))?;
        // A provider turned off or removed since the first step opens nothing (checked before
        // the code, so the answer says nothing about the code).
        if let Some(provider_id) = &challenge.sso_provider_id
            && let Err(e) = self.check_provider_live(&mut tx, provider_id).await
        {
            tx.delete_mfa_challenge(&challenge_hash).await?;
            let actor = user_actor(&user, client, tx.org_id());
            tx.append_audit(actor.event(
                "auth.mfa_verify",
                format!("user:{}", user.id),
                "failure",
                json!({"sso": true, "provider": provider_id, "reason": e.to_string()}),
            ))
            .await?;
            tx.commit().await?;
            return Err(e);
        }
        self.count_attempt(&user.email, client)?;
        let method = if challenge.enrolling {
            self.confirm_first_authenticator(&mut tx, &user, &challenge, code)
                .await?
        } else {
            self.check_second_factor(&mut tx, &user, code).await?
        };
        let Some(method) = method else {
            tx.count_mfa_attempt(&challenge_hash).await?;
            if let Some(provider_id) = &challenge.sso_provider_id {
                // In the provider's organisation, whose admins watch its sign-ins.
                let actor = user_actor(&user, client, tx.org_id());
                tx.append_audit(actor.event(
                    "auth.mfa_verify",
                    format!("user:{}", user.id),
                    "failure",
                    json!({"sso": true, "provider": provider_id,
                           "enrolling": challenge.enrolling, "reason": "wrong code"}),
                ))
                .await?;
            }
            tx.commit().await?;
            self.record_login_failure(&user.email, Some(&user.id), client, "wrong MFA code")
                .await;
            return Err(AccountError::unauthorized(
                Some("code"),
                "the code is wrong or was used already",
            ));
        };
        tx.delete_mfa_challenge(&challenge_hash).await?;
        let backup_codes = if challenge.enrolling {
            let (codes, hashes) = generate_backup_codes()?;
            tx.replace_backup_codes(&user.id, &hashes).await?;
            let actor = user_actor(&user, client, tx.org_id());
            tx.append_audit(actor.event(
                "mfa.enable",
                format!("user:{}", user.id),
                "success",
                json!({"backup_codes": codes.len(), "at_sign_in": true}),
            ))
            .await?;
            Some(codes)
        } else {
            None
        };
        let pair = match (&challenge.sso_org_id, &challenge.sso_provider_id) {
            (Some(_), Some(provider_id)) => {
                // The provider was found live at the start of this transaction.
                let detail =
                    json!({"sso": true, "provider": provider_id, "mfa": true, "method": method});
                let sso = Some((chain.as_str(), provider_id.as_str()));
                self.open_session(tx, &user, client, detail, sso).await?
            }
            _ => {
                let detail = json!({"mfa": true, "method": method});
                self.sign_in(tx, &user, client, detail).await?
            }
        };
        self.attempt_succeeded(&user.email, client);
        Ok(MfaVerified { pair, backup_codes })
    }

    /// Checks `code` against the pending seed the step was issued with and turns TOTP on with
    /// it; `None` when the code does not match. A seed set since (another sign-in, the profile)
    /// or an authenticator turned on meanwhile ends the step.
    async fn confirm_first_authenticator(
        &self,
        tx: &mut Tx,
        user: &UserRow,
        challenge: &infrapilot_store::MfaChallengeRow,
        code: &str,
    ) -> Result<Option<&'static str>> {
        let same_seed = user
            .totp_secret
            .as_deref()
            .map(seed_fingerprint)
            .is_some_and(|f| challenge.seed_fingerprint.as_deref() == Some(f.as_str()));
        if !same_seed {
            return Err(AccountError::unauthorized(
                Some("mfa_token"),
                "the authenticator set-up was replaced by a newer one; sign in again",
            ));
        }
        let code = code.trim();
        let Some(seed) = self.open_seed(user)? else {
            return Ok(None);
        };
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        let Some(step) = verify_totp(&seed, code, unix_now(), None) else {
            return Ok(None);
        };
        let sealed = user.totp_secret.as_deref().unwrap_or_default();
        if !tx.enable_totp(&user.id, step, sealed).await? {
            return Err(AccountError::unauthorized(
                Some("mfa_token"),
                "an authenticator was turned on meanwhile; sign in again",
            ));
        }
        Ok(Some("totp_enrolled"))
    }

    /// Ends a single sign-on login the host accepted (`user` from `provider_id` of `org`):
    /// a session, or, under the provider's `local` MFA policy (read here, in the transaction
    /// that ends the login), the second step — which enrols the person's first authenticator
    /// when they have none. `tx` is in `org`. `second_factor`: the identity provider reported
    /// one for this login (a policy tightened to `idp` since the callback still refuses it).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_sso_login(
        &self,
        mut tx: Tx,
        user: &UserRow,
        client: &Client,
        detail: serde_json::Value,
        org: &OrgId,
        provider_id: &str,
        second_factor: bool,
    ) -> Result<LoginOutcome> {
        let mfa = self.check_provider_live(&mut tx, provider_id).await?;
        if mfa == sso::SsoMfa::IdentityProvider && !second_factor {
            drop(tx);
            let reason = "the provider now requires a second factor at the identity provider, and it reported none for this sign-in; sign in again";
            let actor = user_actor(user, client, org.as_str());
            self.record_standalone(
                org,
                actor.event(
                    "sso.login",
                    format!("sso_provider:{provider_id}"),
                    "failure",
                    json!({"provider": provider_id, "reason": reason}),
                ),
            )
            .await;
            return Err(AccountError::SsoRefused(reason.into()));
        }
        if mfa != sso::SsoMfa::Local {
            return self
                .open_session(tx, user, client, detail, Some((org.as_str(), provider_id)))
                .await
                .map(LoginOutcome::Signed);
        }
        // One person's second steps one after another (the pending seed is theirs).
        tx.serialize_for_person(&user.id, "mfa").await?;
        let person = tx
            .person_by_id(&user.id)
            .await?
            .filter(|p| !p.disabled)
            .ok_or(AccountError::Disabled)?;
        let mut enrollment = None;
        let mut fingerprint = None;
        if !person.totp_enabled {
            let fresh = TotpEnrollment::generate(&person.email)
                .map_err(|e| AccountError::Internal(e.to_string()))?;
            let sealed = self
                .secrets
                .seal(TOTP_SEAL_PURPOSE, &fresh.secret)
                .map_err(|e| AccountError::Internal(e.to_string()))?;
            // False when an authenticator was turned on since: then its code is asked for.
            if tx.set_pending_totp(&person.id, &sealed).await? {
                fingerprint = Some(seed_fingerprint(&sealed));
                enrollment = Some(fresh);
                let actor = user_actor(&person, client, tx.org_id());
                tx.append_audit(actor.event(
                    "mfa.enroll_start",
                    format!("user:{}", person.id),
                    "success",
                    json!({"sso": true, "provider": provider_id, "at_sign_in": true}),
                ))
                .await?;
            }
        }
        let challenge = issue_token(TokenKind::MfaChallenge)?;
        tx.insert_mfa_challenge(&NewMfaChallenge {
            token_hash: &challenge.hash,
            user_id: &person.id,
            expires_at: now_ms() + MFA_CHALLENGE_TTL_MS,
            sso: Some((org.as_str(), provider_id)),
            enrolling: fingerprint.as_deref(),
        })
        .await?;
        tx.commit().await?;
        Ok(LoginOutcome::MfaRequired {
            mfa_token: challenge.secret,
            enrollment,
        })
    }

    /// Refuses a login through a provider deleted or turned off while it was under way;
    /// otherwise its MFA policy as it is now (an unknown one asks the most).
    async fn check_provider_live(&self, tx: &mut Tx, provider_id: &str) -> Result<sso::SsoMfa> {
        match tx.sso_provider(provider_id).await? {
            Some(p) if p.enabled => Ok(sso::SsoMfa::parse(&p.mfa).unwrap_or(sso::SsoMfa::Local)),
            _ => Err(AccountError::SsoRefused(
                "this sign-in provider was removed or turned off meanwhile".into(),
            )),
        }
    }

    /// A local (password) sign-in is refused when every organisation of the person requires
    /// single sign-on of them; admins keep theirs for break-glass, and so does the host operator.
    async fn local_sign_in_allowed(&self, user: &UserRow) -> Result<()> {
        let memberships = self.store.lookup().await?.memberships(&user.id).await?;
        let exempt = |m: &infrapilot_store::MembershipRow| {
            !m.require_sso || matches!(Role::parse(&m.role), Some(Role::Admin | Role::SuperAdmin))
        };
        if memberships.is_empty() || memberships.iter().any(exempt) {
            return Ok(());
        }
        let names: Vec<&str> = memberships.iter().map(|m| m.org_name.as_str()).collect();
        Err(AccountError::SsoRequired(format!(
            "{} requires single sign-on: use its sign-in button",
            names.join(", ")
        )))
    }

    /// Opens a session for `user`, whose sign-in is complete (password and, when the account
    /// has it, the second factor; or the identity provider's word), records `auth.login` with
    /// `detail` and commits `tx`. Password, MFA and single sign-on logins all end here; an
    /// account disabled by then gets no session (the refusal is audited).
    pub async fn sign_in(
        &self,
        tx: Tx,
        user: &UserRow,
        client: &Client,
        detail: serde_json::Value,
    ) -> Result<TokenPair> {
        self.open_session(tx, user, client, detail, None).await
    }

    async fn open_session(
        &self,
        mut tx: Tx,
        user: &UserRow,
        client: &Client,
        detail: serde_json::Value,
        sso: Option<(&str, &str)>,
    ) -> Result<TokenPair> {
        // As the account is now, in the transaction that opens the session: it may have been
        // disabled (and its sessions ended) since the caller read it.
        let enabled = tx
            .person_by_id(&user.id)
            .await?
            .is_some_and(|current| !current.disabled);
        if !enabled {
            drop(tx);
            self.record_login_failure(&user.email, Some(&user.id), client, "account disabled")
                .await;
            return Err(AccountError::Disabled);
        }
        let access = issue_token(TokenKind::Access)?;
        let refresh = issue_token(TokenKind::Refresh)?;
        let now = now_ms();
        tx.insert_session(&NewSession {
            id: &uuid::Uuid::new_v4().to_string(),
            user_id: &user.id,
            access_hash: &access.hash,
            access_expires_at: now + self.access_token_ttl.as_millis() as i64,
            refresh_hash: &refresh.hash,
            refresh_expires_at: now + self.session_ttl.as_millis() as i64,
            ip: &client.ip,
            user_agent: &client.user_agent,
            sso,
        })
        .await?;
        let actor = user_actor(user, client, tx.org_id());
        tx.append_audit(actor.event("auth.login", format!("user:{}", user.id), "success", detail))
            .await?;
        tx.commit().await?;
        Ok(self.token_pair(access, refresh))
    }

    fn token_pair(&self, access: IssuedToken, refresh: IssuedToken) -> TokenPair {
        TokenPair {
            access_token: access.secret,
            refresh_token: refresh.secret,
            expires_in: self.access_token_ttl.as_secs(),
        }
    }

    /// Rotates a session's tokens. A refresh token used twice ends the whole session: someone
    /// holds a copy.
    pub async fn refresh(&self, refresh_token: &str, client: &Client) -> Result<TokenPair> {
        let old_hash = hash_token(refresh_token);
        let person = self
            .store
            .read(&host_chain())
            .await?
            .refresh_token(&old_hash)
            .await?
            .map(|r| r.user_id);
        let chain = match &person {
            Some(id) => self.home_chain(id).await?,
            None => host_chain(),
        };
        let mut tx = self.store.write(&chain).await?;
        let invalid = || {
            AccountError::unauthorized(
                Some("refresh_token"),
                "the session has ended; sign in again",
            )
        };
        let row = tx.refresh_token(&old_hash).await?.ok_or_else(invalid)?;
        if row.revoked_at.is_some() || row.refresh_expires_at <= now_ms() {
            return Err(invalid());
        }
        let actor = Actor {
            org_id: chain.clone(),
            user_id: Some(row.user_id.clone()),
            label: tx
                .person_by_id(&row.user_id)
                .await?
                .map(|u| u.email)
                .unwrap_or_else(|| row.user_id.clone()),
            ip: client.ip.clone(),
            role: None,
        };
        let access = issue_token(TokenKind::Access)?;
        let refresh = issue_token(TokenKind::Refresh)?;
        let access_expires = now_ms() + self.access_token_ttl.as_millis() as i64;
        let rotated = row.used_at.is_none()
            && tx
                .rotate_session(
                    &row.session_id,
                    &old_hash,
                    &refresh.hash,
                    &access.hash,
                    access_expires,
                )
                .await?;
        let target = format!("session:{}", row.session_id);
        if !rotated {
            tx.revoke_session(&row.user_id, &row.session_id, "refresh token reuse")
                .await?;
            tx.append_audit(actor.event(
                "auth.refresh_reuse",
                target,
                "denied",
                json!({"session_revoked": true}),
            ))
            .await?;
            tx.commit().await?;
            return Err(invalid());
        }
        tx.append_audit(actor.event("auth.refresh", target, "success", json!({})))
            .await?;
        tx.commit().await?;
        Ok(self.token_pair(access, refresh))
    }

    /// Signs the actor out of the session `session_id` they are using.
    pub async fn logout(&self, actor: &Actor, session_id: &str) -> Result<()> {
        self.end_session(actor, session_id, SessionEnd::Logout)
            .await
    }

    /// Ends one of the actor's sessions; [`AccountError::NoSuchSession`] when it is not one of
    /// their active sessions.
    pub async fn revoke_session(&self, actor: &Actor, session_id: &str) -> Result<()> {
        self.end_session(actor, session_id, SessionEnd::Revoke)
            .await
    }

    async fn end_session(&self, actor: &Actor, session_id: &str, how: SessionEnd) -> Result<()> {
        let (action, reason) = match how {
            SessionEnd::Logout => ("auth.logout", "logout"),
            SessionEnd::Revoke => ("auth.session_revoke", "revoked by user"),
        };
        let user_id = actor.user_id.as_deref().unwrap_or_default();
        let mut tx = self.store.write(&actor.org_id).await?;
        // The session signing out was active a moment ago: it ends either way.
        if !tx.revoke_session(user_id, session_id, reason).await? && how == SessionEnd::Revoke {
            return Err(AccountError::NoSuchSession);
        }
        tx.append_audit(actor.event(
            action,
            format!("session:{session_id}"),
            "success",
            json!({}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The signed-in user's own row.
    async fn current_user(&self, tx: &mut Tx, actor: &Actor) -> Result<UserRow> {
        let user_id = actor.user_id.as_deref().unwrap_or_default();
        tx.person_by_id(user_id)
            .await?
            .ok_or_else(AccountError::account_gone)
    }

    /// The signed-in user's own row, read in its own transaction.
    async fn read_current_user(&self, actor: &Actor) -> Result<UserRow> {
        let mut tx = self.store.read(&actor.org_id).await?;
        let user = self.current_user(&mut tx, actor).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Changes the actor's password (the current one re-checked as `current_password`), ends
    /// their other sessions (not `keep_session`) and revokes their API tokens.
    pub async fn change_password(
        &self,
        actor: &Actor,
        client: &Client,
        current_password: String,
        new_password: String,
        keep_session: Option<&str>,
    ) -> Result<()> {
        let user = self.read_current_user(actor).await?;
        self.recheck_password(&user, client, "current_password", current_password)
            .await?;
        let new_hash = new_password_hash(new_password).await?;
        let mut tx = self.store.write(&actor.org_id).await?;
        tx.set_password_hash(&user.id, &new_hash).await?;
        let ended = tx
            .revoke_user_sessions(&user.id, "password changed", keep_session)
            .await?;
        let tokens_revoked = tx.revoke_user_api_tokens(&user.id).await?;
        tx.append_audit(actor.event(
            "auth.password_change",
            format!("user:{}", user.id),
            "success",
            json!({"other_sessions_revoked": ended, "api_tokens_revoked": tokens_revoked}),
        ))
        .await?;
        tx.commit().await?;
        self.revoke_tokens_everywhere(&user.id).await?;
        Ok(())
    }

    /// Revokes a person's API tokens in every organisation they belong to (a changed or reset
    /// password, a disabled account), each in a tenant transaction of its own.
    async fn revoke_tokens_everywhere(&self, user_id: &str) -> Result<u64> {
        let memberships = self.store.lookup().await?.memberships(user_id).await?;
        let mut revoked = 0;
        for membership in memberships {
            let Some(org) = OrgId::parse(&membership.org_id) else {
                continue;
            };
            let mut tx = self.store.write(&org).await?;
            revoked += tx.revoke_user_api_tokens(user_id).await?;
            tx.commit().await?;
        }
        Ok(revoked)
    }

    fn open_seed(&self, user: &UserRow) -> Result<Option<Vec<u8>>> {
        match &user.totp_secret {
            None => Ok(None),
            Some(sealed) => self
                .secrets
                .open(TOTP_SEAL_PURPOSE, sealed)
                .map(Some)
                .map_err(|e| AccountError::Internal(e.to_string())),
        }
    }

    /// Checks a TOTP code (not replayable) or a backup code (single use) for `user` within
    /// `tx`. Returns which kind matched.
    async fn check_second_factor(
        &self,
        tx: &mut Tx,
        user: &UserRow,
        code: &str,
    ) -> Result<Option<&'static str>> {
        let code = code.trim();
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            let Some(seed) = self.open_seed(user)? else {
                return Ok(None);
            };
            return match verify_totp(&seed, code, unix_now(), user.totp_last_step) {
                // A parallel sign-in that used this step already wins; this one is a replay.
                Some(step)
                    if tx
                        .set_totp_last_step(
                            &user.id,
                            step,
                            user.totp_secret.as_deref().unwrap_or_default(),
                        )
                        .await? =>
                {
                    Ok(Some("totp"))
                }
                Some(_) => Ok(None),
                None => Ok(None),
            };
        }
        if tx
            .consume_backup_code(&user.id, &backup_code_hash(code))
            .await?
        {
            return Ok(Some("backup_code"));
        }
        Ok(None)
    }

    /// Whether the install may still be claimed with `given`, the setup code the server printed
    /// at first start (`expected`; `None` when setup through the API is closed). Refused once
    /// users exist (before anything else, so a finished install reveals nothing), throttled per
    /// address.
    pub async fn check_setup_code(
        &self,
        expected: Option<&str>,
        given: &str,
        client: &Client,
    ) -> Result<()> {
        if self.store.read(&host_chain()).await?.count_users().await? > 0 {
            return Err(AccountError::SetupDone);
        }
        let expected = expected.ok_or(AccountError::SetupClosed)?;
        let throttle_key = format!("setup:{}", client.throttle_key);
        if let ThrottleDecision::Deny { retry_after } = self.ip_throttle.try_attempt(&throttle_key)
        {
            return Err(AccountError::TooManyAttempts {
                retry_after_secs: retry_after.as_secs().max(1),
            });
        }
        if !same_secret(given.trim(), expected) {
            return Err(AccountError::WrongSetupCode);
        }
        self.ip_throttle.forgive_one(&throttle_key);
        Ok(())
    }

    /// An administrator's change to user `user_id`: profile, role, disabled, password. A
    /// reset password or a disabled account also ends the user's sessions and API tokens; the
    /// last enabled super_admin cannot be demoted or disabled.
    pub async fn update_user(
        &self,
        actor: &Actor,
        user_id: &str,
        changes: UserChanges,
    ) -> Result<UserRow> {
        let password_hash = match changes.password {
            Some(p) => Some(new_password_hash(p).await?),
            None => None,
        };
        let mut tx = self.store.write(&actor.org_id).await?;
        let user = find_user(&mut tx, user_id).await?;
        if changes.role.is_some_and(|r| r != Role::SuperAdmin) {
            keep_a_super_admin(&mut tx, &user, "role").await?;
        }
        if changes.role.is_some_and(|r| r < Role::Admin) {
            keep_an_admin(&mut tx, &user, "role").await?;
        }
        if changes.disabled == Some(true) {
            keep_a_super_admin(&mut tx, &user, "disabled").await?;
            keep_an_admin(&mut tx, &user, "disabled").await?;
            // The account is the person's: disabled here, it is disabled in every organisation.
            self.other_organisations_keep_an_admin(&actor.org_id, &user.id)
                .await?;
        }
        let mut changed = Vec::new();
        if changes.name.is_some() || changes.disabled.is_some() {
            tx.update_user_profile(
                &user.id,
                changes.name.as_deref().unwrap_or(&user.name),
                changes.disabled.unwrap_or(user.disabled),
            )
            .await?;
            if changes.name.is_some() {
                changed.push("name");
            }
            if changes.disabled.is_some() {
                changed.push("disabled");
            }
        }
        if let Some(role) = changes.role {
            tx.set_role(&user.id, role.as_str()).await?;
            changed.push("role");
        }
        if let Some(hash) = &password_hash {
            tx.set_password_hash(&user.id, hash).await?;
            changed.push("password");
        }
        if password_hash.is_some() || changes.disabled == Some(true) {
            tx.revoke_user_sessions(&user.id, "changed by an administrator", None)
                .await?;
            // A reset password or a disabled account also ends the API tokens the user made.
            tx.revoke_user_api_tokens(&user.id).await?;
        }
        tx.append_audit(actor.event(
            "user.update",
            format!("user:{}", user.id),
            "success",
            json!({"changed": changed, "role": changes.role.map(|r| r.as_str()), "disabled": changes.disabled}),
        ))
        .await?;
        let updated = find_user(&mut tx, &user.id).await?;
        tx.commit().await?;
        if password_hash.is_some() || changes.disabled == Some(true) {
            self.revoke_tokens_everywhere(&user.id).await?;
        }
        Ok(updated)
    }

    /// The host operator's reset of a person's second factor (a lost authenticator, or one
    /// someone else set up at a sign-in that required it): TOTP off, backup codes gone, their
    /// sessions ended; their next sign-in that requires it enrols a new one. Never one's own
    /// (that is `disable_mfa`, with the password).
    pub async fn reset_user_mfa(&self, actor: &Actor, user_id: &str) -> Result<()> {
        let mut tx = self.store.write(&actor.org_id).await?;
        let user = find_user(&mut tx, user_id).await?;
        if actor.user_id.as_deref() == Some(user.id.as_str()) {
            return Err(AccountError::Invalid {
                field: "id".into(),
                message:
                    "turn off your own second factor on your profile (it asks for your password)"
                        .into(),
            });
        }
        match reset_second_factor(&mut tx, actor, &user.id).await? {
            SecondFactorReset::Done => {
                tx.commit().await?;
                Ok(())
            }
            SecondFactorReset::NoneToReset => Err(AccountError::Conflict(format!(
                "{} has no second factor",
                user.email
            ))),
        }
    }

    /// Deletes user `user_id` (not the actor themselves, not the last enabled super_admin) and
    /// ends their sessions.
    pub async fn delete_user(&self, actor: &Actor, user_id: &str) -> Result<()> {
        let mut tx = self.store.write(&actor.org_id).await?;
        let user = find_user(&mut tx, user_id).await?;
        if actor.user_id.as_deref() == Some(user.id.as_str()) {
            return Err(AccountError::CannotDeleteSelf);
        }
        // Two organisations removing the same person at once must not each see the other's
        // membership and leave a person with none and a live session.
        tx.serialize_person(&user.id).await?;
        keep_a_super_admin(&mut tx, &user, "id").await?;
        keep_an_admin(&mut tx, &user, "id").await?;
        // Removed from this organisation: their tokens and invitations here end with it. The
        // person is deleted (and their sessions end) only when no other organisation has them.
        tx.revoke_user_api_tokens(&user.id).await?;
        tx.revoke_invitations_by(&user.id).await?;
        tx.delete_user(&user.id).await?;
        if !tx.has_any_membership(&user.id).await? {
            tx.revoke_user_sessions(&user.id, "user deleted", None)
                .await?;
        }
        tx.append_audit(actor.event(
            "user.delete",
            format!("user:{}", user.id),
            "success",
            json!({"email": user.email}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Refuses when `user_id` is the last enabled admin of an organisation other than `here`
    /// (checked under each organisation's lock; a change racing with this one there is caught by
    /// that organisation's own check).
    async fn other_organisations_keep_an_admin(&self, here: &OrgId, user_id: &str) -> Result<()> {
        let memberships = self.store.lookup().await?.memberships(user_id).await?;
        for membership in memberships {
            if membership.org_id == here.as_str() || membership.role != Role::Admin.as_str() {
                continue;
            }
            let Some(org) = OrgId::parse(&membership.org_id) else {
                continue;
            };
            let mut tx = self.store.read(&org).await?;
            if let Some(member) = tx.user_by_id(user_id).await? {
                keep_an_admin(&mut tx, &member, "disabled").await?;
            }
        }
        Ok(())
    }

    /// Where the actor's MFA stands.
    pub async fn mfa_status(&self, actor: &Actor) -> Result<MfaStatus> {
        let mut tx = self.store.read(&actor.org_id).await?;
        let user = self.current_user(&mut tx, actor).await?;
        let backup_codes_remaining = tx.remaining_backup_codes(&user.id).await?;
        tx.commit().await?;
        Ok(MfaStatus {
            enabled: user.totp_enabled,
            pending: !user.totp_enabled && user.totp_secret.is_some(),
            backup_codes_remaining,
        })
    }

    /// Starts a TOTP enrolment: a new seed, sealed and pending until confirmed.
    pub async fn start_mfa_enrollment(&self, actor: &Actor) -> Result<TotpEnrollment> {
        let mut tx = self.store.write(&actor.org_id).await?;
        // One person's second-factor changes one after another, in any organisation.
        if let Some(id) = &actor.user_id {
            tx.serialize_for_person(id, "mfa").await?;
        }
        let user = self.current_user(&mut tx, actor).await?;
        if user.totp_enabled {
            return Err(AccountError::Conflict(
                "MFA is already on; disable it first to enrol a new authenticator".into(),
            ));
        }
        let enrollment = TotpEnrollment::generate(&user.email)
            .map_err(|e| AccountError::Internal(e.to_string()))?;
        let sealed = self
            .secrets
            .seal(TOTP_SEAL_PURPOSE, &enrollment.secret)
            .map_err(|e| AccountError::Internal(e.to_string()))?;
        if !tx.set_pending_totp(&user.id, &sealed).await? {
            return Err(AccountError::Conflict(
                "MFA is already on; disable it first to enrol a new authenticator".into(),
            ));
        }
        tx.append_audit(actor.event(
            "mfa.enroll_start",
            format!("user:{}", user.id),
            "success",
            json!({}),
        ))
        .await?;
        tx.commit().await?;
        Ok(enrollment)
    }

    /// Confirms a pending enrolment with a code from the authenticator; turns MFA on and returns
    /// the new backup codes (shown once).
    pub async fn confirm_mfa(&self, actor: &Actor, code: &str) -> Result<Vec<String>> {
        let mut tx = self.store.write(&actor.org_id).await?;
        // One person's second-factor changes one after another, in any organisation.
        if let Some(id) = &actor.user_id {
            tx.serialize_for_person(id, "mfa").await?;
        }
        let user = self.current_user(&mut tx, actor).await?;
        if user.totp_enabled {
            return Err(AccountError::Conflict("MFA is already on".into()));
        }
        let seed = self.open_seed(&user)?.ok_or_else(|| {
            AccountError::Conflict("start an enrolment first (POST /api/v1/auth/mfa/enroll)".into())
        })?;
        let step =
            verify_totp(&seed, code, unix_now(), None).ok_or_else(|| AccountError::Invalid {
                field: "code".into(),
                message: "the code does not match; check the time on your device".into(),
            })?;
        let sealed = user.totp_secret.as_deref().unwrap_or_default();
        if !tx.enable_totp(&user.id, step, sealed).await? {
            return Err(AccountError::Conflict(
                "MFA is already on, or another set-up was started meanwhile; start again".into(),
            ));
        }
        let (codes, hashes) = generate_backup_codes()?;
        tx.replace_backup_codes(&user.id, &hashes).await?;
        tx.append_audit(actor.event(
            "mfa.enable",
            format!("user:{}", user.id),
            "success",
            json!({"backup_codes": codes.len()}),
        ))
        .await?;
        tx.commit().await?;
        Ok(codes)
    }

    /// Turns MFA off (or drops a pending enrolment); the password re-checked as `password`.
    pub async fn disable_mfa(
        &self,
        actor: &Actor,
        client: &Client,
        password: String,
    ) -> Result<()> {
        let user = self.read_current_user(actor).await?;
        self.recheck_password(&user, client, "password", password)
            .await?;
        if !user.totp_enabled && user.totp_secret.is_none() {
            return Err(AccountError::Conflict("MFA is not on".into()));
        }
        let mut tx = self.store.write(&actor.org_id).await?;
        tx.serialize_for_person(&user.id, "mfa").await?;
        tx.disable_totp(&user.id).await?;
        tx.append_audit(actor.event(
            "mfa.disable",
            format!("user:{}", user.id),
            "success",
            json!({}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// New backup codes in place of the old ones; the password re-checked as `password`.
    pub async fn regenerate_backup_codes(
        &self,
        actor: &Actor,
        client: &Client,
        password: String,
    ) -> Result<Vec<String>> {
        let user = self.read_current_user(actor).await?;
        self.recheck_password(&user, client, "password", password)
            .await?;
        if !user.totp_enabled {
            return Err(AccountError::Conflict("MFA is not on".into()));
        }
        let (codes, hashes) = generate_backup_codes()?;
        let mut tx = self.store.write(&actor.org_id).await?;
        tx.serialize_for_person(&user.id, "mfa").await?;
        tx.replace_backup_codes(&user.id, &hashes).await?;
        tx.append_audit(actor.event(
            "mfa.backup_codes_regenerate",
            format!("user:{}", user.id),
            "success",
            json!({}),
        ))
        .await?;
        tx.commit().await?;
        Ok(codes)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    Logout,
    Revoke,
}

/// A caller without credentials, as the audit trail names it.
fn anonymous(client: &Client) -> Actor {
    Actor {
        org_id: host_chain(),
        user_id: None,
        label: "anonymous".into(),
        ip: client.ip.clone(),
        role: None,
    }
}

/// A user acting for themselves before they hold a token (sign-in), recorded in `chain`.
fn user_actor(user: &UserRow, client: &Client, chain: &str) -> Actor {
    Actor {
        org_id: OrgId::parse(chain).unwrap_or_else(host_chain),
        user_id: Some(user.id.clone()),
        label: user.email.clone(),
        ip: client.ip.clone(),
        role: None,
    }
}
