//! Public sign-up (the SaaS edition): a stranger becomes a person with an organisation of their
//! own, and proves their email by a mailed link before they can sign in.

use infrapilot_identity::{TokenKind, hash_token, issue_token};
use infrapilot_store::{NewUser, OrgId, now_ms};
use serde_json::json;

use crate::{AccountError, AccountService, Client, Result, new_password_hash};

/// How long a verification link works.
pub const VERIFICATION_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// What a sign-up asks for (validated by the caller: email, password, names).
#[derive(Debug)]
pub struct SignUp {
    pub email: String,
    pub password: String,
    pub name: String,
    pub organisation: String,
}

/// A sign-up done: the person, their organisation, and the verification link's secret (to mail,
/// never to answer with).
#[derive(Debug)]
pub struct SignedUp {
    pub user_id: String,
    pub org_id: OrgId,
    pub verification_secret: String,
}

impl AccountService<'_> {
    /// Makes the person (unverified) and their organisation (they its admin), in one
    /// transaction of that organisation with its `signup` audit event. Argon2 waits its turn
    /// like an anonymous sign-in.
    pub async fn sign_up(&self, request: SignUp, client: &Client) -> Result<SignedUp> {
        let turn = self.anonymous_check_turn().await?;
        let password_hash = new_password_hash(request.password).await?;
        drop(turn);
        let org = OrgId::generate();
        let user_id = uuid::Uuid::new_v4().to_string();
        let verification = issue_token(TokenKind::EmailVerification)?;
        let mut tx = self.store.write(&org).await?;
        tx.insert_organization(&request.organisation).await?;
        tx.insert_user(&NewUser {
            id: &user_id,
            email: &request.email,
            name: &request.name,
            password_hash: &password_hash,
            role: "admin",
        })
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                AccountError::EmailTaken
            } else {
                e.into()
            }
        })?;
        tx.set_email_verified(&user_id, false).await?;
        tx.insert_email_verification(&verification.hash, &user_id, now_ms() + VERIFICATION_TTL_MS)
            .await?;
        let actor = infrapilot_store::Actor {
            org_id: org.clone(),
            user_id: Some(user_id.clone()),
            label: request.email.clone(),
            ip: client.ip.clone(),
            role: None,
        };
        tx.append_audit(actor.event(
            "signup",
            format!("user:{user_id}"),
            "success",
            json!({"email": request.email, "organisation": request.organisation}),
        ))
        .await?;
        tx.commit().await?;
        Ok(SignedUp {
            user_id,
            org_id: org,
            verification_secret: verification.secret,
        })
    }

    /// Follows a verification link: the person's email is verified (once; the link expires in
    /// a day). Recorded in the person's organisation.
    pub async fn verify_email(&self, secret: &str, client: &Client) -> Result<()> {
        let invalid = || AccountError::Unauthorized {
            field: Some("token".into()),
            message: "this verification link was used, expired or is wrong; sign up again".into(),
        };
        if !secret.starts_with(TokenKind::EmailVerification.prefix()) || secret.len() > 128 {
            return Err(invalid());
        }
        let hash = hash_token(secret);
        // The person first (verifications are personal), then a transaction in their
        // organisation that spends the link.
        let person = self
            .store
            .read(&OrgId::default_org())
            .await?
            .email_verification_person(&hash)
            .await?
            .ok_or_else(invalid)?;
        let chain = self.home_chain(&person).await?;
        let mut tx = self.store.write(&chain).await?;
        let user_id = tx
            .spend_email_verification(&hash)
            .await?
            .ok_or_else(invalid)?;
        tx.set_email_verified(&user_id, true).await?;
        let user = tx
            .person_by_id(&user_id)
            .await?
            .ok_or_else(AccountError::account_gone)?;
        let actor = infrapilot_store::Actor {
            org_id: chain,
            user_id: Some(user.id.clone()),
            label: user.email.clone(),
            ip: client.ip.clone(),
            role: None,
        };
        tx.append_audit(actor.event(
            "signup.verify",
            format!("user:{}", user.id),
            "success",
            json!({"email": user.email}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
