//! Certificates uploaded for proxy hosts: the chain, its facts (JSON) and the sealed key.

use crate::proxies::sql;
use crate::{Result, Tx, now_ms};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProxyCertificateRow {
    pub id: String,
    pub name: String,
    /// JSON `CertificateFacts`.
    pub facts: String,
    pub certificate_pem: String,
    /// The private key, sealed with the host's master key.
    pub sealed_key: Vec<u8>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewProxyCertificate<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub facts: &'a str,
    pub certificate_pem: &'a str,
    pub sealed_key: &'a [u8],
    pub created_by: &'a str,
}

const COLUMNS: &str = "SELECT id, name, facts, certificate_pem, sealed_key, created_by, created_at, \
     updated_at FROM proxy_certificates WHERE org_id = $1";

impl Tx {
    pub async fn list_proxy_certificates(&mut self) -> Result<Vec<ProxyCertificateRow>> {
        let org = self.org_id.clone();
        let q = sql(&[COLUMNS, " ORDER BY name, id"]);
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, ProxyCertificateRow>(q)
            .bind(&org)
            .fetch_all(&mut **c)
            .await)?,
        )
    }

    pub async fn proxy_certificate(&mut self, id: &str) -> Result<Option<ProxyCertificateRow>> {
        let org = self.org_id.clone();
        let q = sql(&[COLUMNS, " AND id = $2"]);
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, ProxyCertificateRow>(q)
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?,
        )
    }

    /// Inserts a certificate, or replaces the chain and key of the one with the same id.
    /// `Err(())` when another certificate of the organisation has the name.
    pub async fn put_proxy_certificate(
        &mut self,
        c: &NewProxyCertificate<'_>,
    ) -> Result<std::result::Result<(), ()>> {
        let org = self.org_id.clone();
        let taken = on_tx!(self, conn => sqlx::query_scalar::<_, String>(
            "SELECT id FROM proxy_certificates WHERE org_id = $1 AND name = $2 AND id <> $3",
        )
        .bind(&org)
        .bind(c.name)
        .bind(c.id)
        .fetch_optional(&mut **conn)
        .await)?;
        if taken.is_some() {
            return Ok(Err(()));
        }
        let now = now_ms();
        on_tx!(self, conn => sqlx::query(
            "INSERT INTO proxy_certificates (id, org_id, name, facts, certificate_pem, sealed_key, \
             created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, facts = excluded.facts, \
             certificate_pem = excluded.certificate_pem, sealed_key = excluded.sealed_key, \
             updated_at = excluded.updated_at WHERE proxy_certificates.org_id = excluded.org_id",
        )
        .bind(c.id)
        .bind(&org)
        .bind(c.name)
        .bind(c.facts)
        .bind(c.certificate_pem)
        .bind(c.sealed_key)
        .bind(c.created_by)
        .bind(now)
        .execute(&mut **conn)
        .await
        .map(|_| ()))?;
        Ok(Ok(()))
    }

    pub async fn delete_proxy_certificate(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "DELETE FROM proxy_certificates WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(id)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}
