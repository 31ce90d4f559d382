//! The proxy workflow as a service: routes, jobs and plugins call it with an [`Actor`] (and, for
//! the parts that join a caller's change, a transaction) and get a [`ProxyServiceError`] back.
//!
//! Every change to a node's hosts — create, update, delete, re-apply, rollback, or a replaced
//! uploaded certificate — makes a revision of the node's whole configuration: the change passes
//! the node-action guards first ([`ProxyService::admit`], before any write transaction opens),
//! then, in one transaction, the hosts change, the revision is rendered through the node's
//! proxy-backend plugin, its apply command is stored (sealed when it carries a certificate's
//! key) through the node-action door, and the audit event is written
//! ([`ProxyService::stage`]); once that commits the command is sent and awaited a while
//! ([`ProxyService::dispatch`]). [`ProxyService::change`] does all three.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use infrapilot_identity::SecretBox;
use infrapilot_nodes::{
    Actor, Admitted, NodeActionError, NodeActions, ProxyApply, ProxyChange, StagedApply,
};
use infrapilot_plugin_host::PluginHost;
use infrapilot_store::{NewProxyCertificate, NewProxyRevision, OrgId, Store, StoreError, Tx};
use serde::Serialize;
use serde_json::json;

use crate::certificate::{CertificateFacts, CheckedCertificate, chain_ocsp_responder, uncovered};
use crate::{CertificateMaterial, ProxySpec, RenderError, RevisionHost};

/// How long a change waits for the node's answer before it is reported `pending`.
pub const APPLY_WAIT: Duration = Duration::from_secs(20);
/// How long an apply command stays deliverable to a node that is offline.
pub const APPLY_EXPIRES: Duration = Duration::from_secs(30 * 86_400);

/// Why a proxy change was not made. Nothing of the change was stored (a refusal by a
/// node-action guard is audited on its own).
#[derive(Debug, thiserror::Error)]
pub enum ProxyServiceError {
    #[error("no such agent")]
    NoSuchNode,
    #[error("the agent is revoked")]
    NodeRevoked,
    #[error("no such proxy host")]
    NoSuchHost,
    #[error("no such revision")]
    NoSuchRevision,
    #[error("no such certificate")]
    NoSuchCertificate,
    /// A host names an uploaded certificate that does not exist.
    #[error("no such uploaded certificate")]
    NoSuchUploadedCertificate,
    /// `domains[index]` is served by another host of the node.
    #[error("{domain} is already served by another proxy host on this node")]
    DomainTaken { index: usize, domain: String },
    /// `domains[index]` is not covered by the uploaded certificate the host names.
    #[error("{domain} is not covered by the certificate {certificate} (it names {names})")]
    NotCovered {
        index: usize,
        domain: String,
        certificate: String,
        names: String,
    },
    /// A replacement certificate does not cover a domain a host serves with it.
    #[error(
        "the new certificate does not cover {domain}, which proxy host {host} serves with it (it names {names})"
    )]
    ReplacementNotCovered {
        domain: String,
        host: String,
        names: String,
    },
    #[error("the uploaded certificate {certificate} of proxy host {host} no longer exists")]
    CertificateGone { certificate: String, host: String },
    #[error("proxy host {host} ({domains}) serves this certificate; change its TLS first")]
    CertificateInUse { host: String, domains: String },
    #[error("another certificate has this name")]
    CertificateNameTaken,
    #[error(
        "the proxy hosts using this certificate changed while it was being replaced; try again"
    )]
    CertificateUsersChanged,
    #[error("this host runs without the plugin runtime")]
    NoRuntime,
    #[error("the proxy backend cannot render: {0}")]
    Render(#[from] RenderError),
    #[error("the proxy backend refused host {host}: {message}")]
    BackendRefused { host: String, message: String },
    #[error("another change to this node's proxy was made at the same time; try again")]
    ConcurrentChange,
    #[error(transparent)]
    Action(#[from] NodeActionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data that does not read back, or a secret that does not open: a bug or damage.
    #[error("{0}")]
    Internal(String),
}

type Result<T, E = ProxyServiceError> = std::result::Result<T, E>;

fn internal(e: impl std::fmt::Display) -> ProxyServiceError {
    ProxyServiceError::Internal(e.to_string())
}

/// What a revision changes in the node's hosts.
#[derive(Debug, Clone)]
pub enum Change {
    Create {
        id: String,
        spec: ProxySpec,
    },
    Update {
        id: String,
        spec: ProxySpec,
    },
    Delete {
        id: String,
    },
    Reapply,
    Rollback {
        to: i64,
    },
    /// An uploaded certificate the node's hosts use was replaced.
    Certificate {
        id: String,
    },
}

impl Change {
    /// The change as the node-action guards see it (`deploys`: the hosts a rollback serves).
    fn as_node_action(&self, deploys: Option<serde_json::Value>) -> Result<ProxyChange> {
        let kind = match self {
            Change::Create { .. } => "create",
            Change::Update { .. } => "update",
            Change::Delete { .. } => "delete",
            Change::Reapply => "reapply",
            Change::Rollback { .. } => "rollback",
            Change::Certificate { .. } => "certificate",
        };
        let (subject, spec) = match self {
            Change::Create { id, spec } | Change::Update { id, spec } => (
                Some(id.clone()),
                Some(serde_json::to_value(spec).map_err(internal)?),
            ),
            Change::Delete { id } | Change::Certificate { id } => (Some(id.clone()), None),
            Change::Rollback { to } => (Some(to.to_string()), None),
            Change::Reapply => (None, None),
        };
        Ok(ProxyChange {
            kind: kind.to_owned(),
            subject,
            spec,
            hosts: deploys,
        })
    }

    /// The revision's reason as its list shows it.
    fn reason(&self) -> String {
        match self {
            Change::Create { .. } => "create".into(),
            Change::Update { .. } => "update".into(),
            Change::Delete { .. } => "delete".into(),
            Change::Reapply => "reapply".into(),
            Change::Rollback { to } => format!("rollback:{to}"),
            Change::Certificate { .. } => "certificate".into(),
        }
    }
}

/// A change made: its revision, and what warn policies said about it.
#[derive(Debug)]
pub struct Changed {
    pub revision: i64,
    pub warnings: Vec<infrapilot_nodes::Notice>,
}

/// A revision written in a transaction, whose command is sent once it commits.
#[derive(Debug)]
pub struct StagedRevision {
    pub agent_id: String,
    pub number: i64,
    apply: StagedApply,
}

/// A proxy host that serves a certificate.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CertificateUse {
    pub agent_id: String,
    pub proxy_id: String,
    pub domains: Vec<String>,
}

/// An uploaded certificate to store: its checked chain and key, and the name to pick it by.
#[derive(Debug)]
pub struct CertificateUpload {
    pub name: String,
    pub checked: CheckedCertificate,
}

/// The hosts a revision keeps, as stored (`[{"id", "spec"}]`).
pub fn parse_hosts(json_text: &str) -> Vec<RevisionHost> {
    serde_json::from_str(json_text).unwrap_or_default()
}

/// What an uploaded certificate's key is sealed for.
pub fn certificate_seal_purpose(id: &str) -> String {
    format!("proxy-certificate:{id}")
}

/// Which hosts of the transaction's organisation use each uploaded certificate.
pub async fn certificate_uses(tx: &mut Tx) -> Result<BTreeMap<String, Vec<CertificateUse>>> {
    let mut by_certificate: BTreeMap<String, Vec<CertificateUse>> = BTreeMap::new();
    for row in tx.list_org_proxy_hosts().await? {
        let spec: ProxySpec = serde_json::from_str(&row.spec).map_err(internal)?;
        if let Some(cid) = spec.uploaded_certificate() {
            by_certificate
                .entry(cid.to_owned())
                .or_default()
                .push(CertificateUse {
                    agent_id: row.agent_id,
                    proxy_id: row.id,
                    domains: spec.domains.clone(),
                });
        }
    }
    Ok(by_certificate)
}

/// The proxy workflow over the host's store, secrets, plugins and node-action door.
pub struct ProxyService<'a> {
    pub store: &'a Store,
    pub secrets: &'a SecretBox,
    /// `None` when the host runs without the plugin runtime: nothing can be rendered.
    pub plugins: Option<&'a PluginHost>,
    /// The proxy-backend plugin that renders (the `proxy_backend` setting).
    pub backend_id: &'a str,
    pub actions: &'a NodeActions,
}

impl ProxyService<'_> {
    /// Makes `change` to `agent_id`'s hosts and a revision of its configuration in one
    /// transaction, then sends it and waits a while for the node. Returns the revision number
    /// and what warn policies said about the change.
    pub async fn change(&self, actor: &Actor, agent_id: &str, change: Change) -> Result<Changed> {
        let admitted = self.admit(actor, agent_id, &change).await?;
        let warnings = admitted.warnings();
        let mut tx = self.store.write(&actor.org_id).await?;
        let staged = self
            .stage(&mut tx, actor, agent_id, change, admitted)
            .await?;
        tx.commit().await?;
        let revision = staged.number;
        self.dispatch(&actor.org_id, staged).await;
        Ok(Changed { revision, warnings })
    }

    /// Runs the node-action guards on `change` to `agent_id`'s proxy, before its transaction
    /// opens.
    pub async fn admit(&self, actor: &Actor, agent_id: &str, change: &Change) -> Result<Admitted> {
        let mut tx = self.store.read(&actor.org_id).await?;
        let node = tx
            .agent(agent_id)
            .await?
            .ok_or(ProxyServiceError::NoSuchNode)?;
        if node.revoked_at.is_some() {
            return Err(ProxyServiceError::NodeRevoked);
        }
        // A rollback deploys an older revision's hosts: the guards see those.
        let deploys = match change {
            Change::Rollback { to } => {
                let old = tx
                    .proxy_revision(agent_id, *to)
                    .await?
                    .ok_or(ProxyServiceError::NoSuchRevision)?;
                Some(serde_json::to_value(parse_hosts(&old.hosts)).map_err(internal)?)
            }
            _ => None,
        };
        tx.commit().await?;
        Ok(self
            .actions
            .admit_proxy_change(actor, &node, change.as_node_action(deploys)?)
            .await?)
    }

    /// Sends a committed revision's command and waits a while for the node. The outcome is
    /// stored with the command; an offline node gets it when it says hello.
    pub async fn dispatch(&self, org_id: &OrgId, staged: StagedRevision) {
        if let Err(e) = self
            .actions
            .dispatch_staged(org_id, staged.apply, APPLY_WAIT)
            .await
        {
            tracing::info!(agent_id = staged.agent_id, revision = staged.number, error = %e, "proxy apply not answered yet");
        }
    }

    /// Makes the change, renders the node's hosts into a revision and stores its apply command
    /// and the audit event, all in `tx`.
    pub async fn stage(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        agent_id: &str,
        change: Change,
        admitted: Admitted,
    ) -> Result<StagedRevision> {
        let plugins = self.plugins.ok_or(ProxyServiceError::NoRuntime)?;
        let agent = tx
            .agent(agent_id)
            .await?
            .ok_or(ProxyServiceError::NoSuchNode)?;
        if agent.revoked_at.is_some() {
            return Err(ProxyServiceError::NodeRevoked);
        }
        let reason = change.reason();
        let (action, target) = match &change {
            Change::Create { id, spec } => {
                check_certificate(tx, spec).await?;
                put_host(tx, agent_id, id, spec).await?;
                ("proxy.create", format!("proxy:{id}"))
            }
            Change::Update { id, spec } => {
                if tx.proxy_host(agent_id, id).await?.is_none() {
                    return Err(ProxyServiceError::NoSuchHost);
                }
                check_certificate(tx, spec).await?;
                put_host(tx, agent_id, id, spec).await?;
                ("proxy.update", format!("proxy:{id}"))
            }
            Change::Delete { id } => {
                if !tx.delete_proxy_host(agent_id, id).await? {
                    return Err(ProxyServiceError::NoSuchHost);
                }
                ("proxy.delete", format!("proxy:{id}"))
            }
            Change::Reapply => ("proxy.reapply", format!("agent:{agent_id}")),
            Change::Certificate { id } => ("proxy.certificate", format!("certificate:{id}")),
            Change::Rollback { to } => {
                let old = tx
                    .proxy_revision(agent_id, *to)
                    .await?
                    .ok_or(ProxyServiceError::NoSuchRevision)?;
                for row in tx.list_proxy_hosts(agent_id).await? {
                    tx.delete_proxy_host(agent_id, &row.id).await?;
                }
                for host in parse_hosts(&old.hosts) {
                    put_host(tx, agent_id, &host.id, &host.spec).await?;
                }
                ("proxy.rollback", format!("agent:{agent_id}"))
            }
        };
        let mut hosts = Vec::new();
        for row in tx.list_proxy_hosts(agent_id).await? {
            hosts.push(RevisionHost {
                spec: serde_json::from_str(&row.spec).map_err(internal)?,
                id: row.id,
            });
        }
        let previous = tx
            .list_proxy_revisions(agent_id, 1)
            .await?
            .first()
            .map(|r| parse_hosts(&r.hosts))
            .unwrap_or_default();
        // Above what the node last said it serves: a database restored from an older backup
        // would otherwise number revisions the node refuses as superseded.
        let node_serves = tx
            .proxy_status(agent_id)
            .await?
            .map(|s| s.revision)
            .unwrap_or(0);
        let number = tx
            .next_proxy_revision(agent_id)
            .await?
            .max(node_serves.saturating_add(1));
        let certificates = self.certificate_material(tx, &hosts).await?;
        let rendered = crate::render(
            plugins,
            self.backend_id,
            &actor.org_id,
            u64::try_from(number).unwrap_or_default(),
            &hosts,
            &previous,
            &certificates,
        )
        .await?;
        if let Some((id, message)) = rendered.refused.first() {
            return Err(ProxyServiceError::BackendRefused {
                host: id.clone(),
                message: message.clone(),
            });
        }
        // A command that carries an uploaded certificate's key is stored sealed.
        let Some(apply) = self
            .actions
            .stage_proxy_apply(
                tx,
                admitted,
                ProxyApply {
                    config: rendered.command,
                    revision: number,
                    seal: !certificates.is_empty(),
                    requested_by: &actor.label,
                    expires_in: APPLY_EXPIRES,
                },
            )
            .await?
        else {
            return Err(ProxyServiceError::ConcurrentChange);
        };
        tx.insert_proxy_revision(&NewProxyRevision {
            id: &uuid::Uuid::new_v4().to_string(),
            agent_id,
            number,
            hosts: &serde_json::to_string(&hosts).map_err(internal)?,
            command_id: apply.command_id(),
            reason: &reason,
            created_by: &actor.label,
        })
        .await?;
        tx.append_audit(actor.event(
            action,
            target,
            "success",
            json!({"agent_id": agent_id, "revision": number}),
        ))
        .await?;
        Ok(StagedRevision {
            agent_id: agent_id.to_owned(),
            number,
            apply,
        })
    }

    /// The uploaded certificates `hosts` use, keys opened to be sent.
    async fn certificate_material(
        &self,
        tx: &mut Tx,
        hosts: &[RevisionHost],
    ) -> Result<HashMap<String, CertificateMaterial>> {
        let mut material = HashMap::new();
        for host in hosts {
            let Some(cid) = host.spec.uploaded_certificate() else {
                continue;
            };
            if material.contains_key(cid) {
                continue;
            }
            let row = tx.proxy_certificate(cid).await?.ok_or_else(|| {
                ProxyServiceError::CertificateGone {
                    certificate: cid.to_owned(),
                    host: host.id.clone(),
                }
            })?;
            let key = self
                .secrets
                .open(&certificate_seal_purpose(cid), &row.sealed_key)
                .map_err(internal)?;
            let facts: CertificateFacts = serde_json::from_str(&row.facts).map_err(internal)?;
            let ocsp_stapling = chain_ocsp_responder(&row.certificate_pem).is_some();
            material.insert(
                cid.to_owned(),
                CertificateMaterial {
                    chain_pem: row.certificate_pem,
                    key_pem: String::from_utf8(key).map_err(internal)?,
                    fingerprint_sha256: facts.fingerprint_sha256,
                    ocsp_stapling,
                },
            );
        }
        Ok(material)
    }

    /// Stores a new uploaded certificate `id` (its key sealed) with its audit event.
    pub async fn upload_certificate(
        &self,
        actor: &Actor,
        id: &str,
        upload: CertificateUpload,
    ) -> Result<()> {
        let sealed = self.seal_key(id, &upload.checked)?;
        let mut tx = self.store.write(&actor.org_id).await?;
        put_certificate(&mut tx, actor, id, &upload, &sealed).await?;
        tx.append_audit(certificate_event(
            actor,
            "proxy_certificate.upload",
            id,
            &upload,
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces certificate `id`'s chain and key (a renewed certificate) and re-applies every
    /// node whose hosts use it, in one transaction: the new certificate must cover all their
    /// domains, and each of those nodes passes the node-action guards first.
    pub async fn replace_certificate(
        &self,
        actor: &Actor,
        id: &str,
        upload: CertificateUpload,
    ) -> Result<Vec<infrapilot_nodes::Notice>> {
        let sealed = self.seal_key(id, &upload.checked)?;
        // The nodes whose hosts use it pass the node-action guards before the transaction opens.
        let mut read = self.store.read(&actor.org_id).await?;
        let mut users: Vec<String> = certificate_uses(&mut read)
            .await?
            .remove(id)
            .unwrap_or_default()
            .into_iter()
            .map(|u| u.agent_id)
            .collect();
        read.commit().await?;
        users.sort_unstable();
        users.dedup();
        let change = Change::Certificate { id: id.to_owned() };
        let mut admitted = HashMap::new();
        for agent_id in users {
            let pass = self.admit(actor, &agent_id, &change).await?;
            admitted.insert(agent_id, pass);
        }
        let mut tx = self.store.write(&actor.org_id).await?;
        tx.proxy_certificate(id)
            .await?
            .ok_or(ProxyServiceError::NoSuchCertificate)?;
        let used_by = certificate_uses(&mut tx)
            .await?
            .remove(id)
            .unwrap_or_default();
        let facts = &upload.checked.facts;
        for u in &used_by {
            if let Some((_, domain)) = uncovered(&facts.domains, &u.domains) {
                return Err(ProxyServiceError::ReplacementNotCovered {
                    domain: domain.to_owned(),
                    host: u.proxy_id.clone(),
                    names: facts.domains.join(", "),
                });
            }
        }
        put_certificate(&mut tx, actor, id, &upload, &sealed).await?;
        tx.append_audit(certificate_event(
            actor,
            "proxy_certificate.replace",
            id,
            &upload,
        ))
        .await?;
        let mut agents: Vec<&str> = used_by.iter().map(|u| u.agent_id.as_str()).collect();
        agents.sort_unstable();
        agents.dedup();
        let mut staged = Vec::with_capacity(agents.len());
        let mut warnings = Vec::new();
        for agent_id in agents {
            let pass = admitted
                .remove(agent_id)
                .ok_or(ProxyServiceError::CertificateUsersChanged)?;
            // One notice per policy, with the reasons of every node.
            for notice in pass.warnings() {
                match warnings
                    .iter_mut()
                    .find(|w: &&mut infrapilot_nodes::Notice| w.policy_id == notice.policy_id)
                {
                    Some(seen) => {
                        for reason in notice.reasons {
                            if !seen.reasons.contains(&reason) {
                                seen.reasons.push(reason);
                            }
                        }
                    }
                    None => warnings.push(notice),
                }
            }
            staged.push(
                self.stage(&mut tx, actor, agent_id, change.clone(), pass)
                    .await?,
            );
        }
        tx.commit().await?;
        for revision in staged {
            self.dispatch(&actor.org_id, revision).await;
        }
        Ok(warnings)
    }

    /// Deletes certificate `id`, which no host may use.
    pub async fn delete_certificate(&self, actor: &Actor, id: &str) -> Result<()> {
        let mut tx = self.store.write(&actor.org_id).await?;
        if let Some(first) = certificate_uses(&mut tx)
            .await?
            .remove(id)
            .and_then(|u| u.into_iter().next())
        {
            return Err(ProxyServiceError::CertificateInUse {
                host: first.proxy_id,
                domains: first.domains.join(", "),
            });
        }
        if !tx.delete_proxy_certificate(id).await? {
            return Err(ProxyServiceError::NoSuchCertificate);
        }
        tx.append_audit(actor.event(
            "proxy_certificate.delete",
            format!("certificate:{id}"),
            "success",
            json!({}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    fn seal_key(&self, id: &str, checked: &CheckedCertificate) -> Result<Vec<u8>> {
        self.secrets
            .seal(&certificate_seal_purpose(id), checked.key_pem.as_bytes())
            .map_err(internal)
    }
}

fn certificate_event(
    actor: &Actor,
    action: &str,
    id: &str,
    upload: &CertificateUpload,
) -> infrapilot_store::NewAuditEvent {
    let facts = &upload.checked.facts;
    actor.event(
        action,
        format!("certificate:{id}"),
        "success",
        json!({"name": upload.name, "domains": facts.domains, "fingerprint_sha256": facts.fingerprint_sha256}),
    )
}

async fn put_certificate(
    tx: &mut Tx,
    actor: &Actor,
    id: &str,
    upload: &CertificateUpload,
    sealed: &[u8],
) -> Result<()> {
    let facts_json = serde_json::to_string(&upload.checked.facts).map_err(internal)?;
    tx.put_proxy_certificate(&NewProxyCertificate {
        id,
        name: &upload.name,
        facts: &facts_json,
        certificate_pem: &upload.checked.chain_pem,
        sealed_key: sealed,
        created_by: &actor.label,
    })
    .await?
    .map_err(|()| ProxyServiceError::CertificateNameTaken)
}

async fn put_host(tx: &mut Tx, agent_id: &str, id: &str, spec: &ProxySpec) -> Result<()> {
    let text = serde_json::to_string(spec).map_err(internal)?;
    if let Err(domain) = tx
        .put_proxy_host(agent_id, id, &text, &spec.domains)
        .await?
    {
        let index = spec.domains.iter().position(|d| *d == domain).unwrap_or(0);
        return Err(ProxyServiceError::DomainTaken { index, domain });
    }
    Ok(())
}

/// Checks that the uploaded certificate a host names exists and covers all its domains.
async fn check_certificate(tx: &mut Tx, spec: &ProxySpec) -> Result<()> {
    let Some(cid) = spec.uploaded_certificate() else {
        return Ok(());
    };
    let row = tx
        .proxy_certificate(cid)
        .await?
        .ok_or(ProxyServiceError::NoSuchUploadedCertificate)?;
    let facts: CertificateFacts = serde_json::from_str(&row.facts).map_err(internal)?;
    if let Some((index, domain)) = uncovered(&facts.domains, &spec.domains) {
        return Err(ProxyServiceError::NotCovered {
            index,
            domain: domain.to_owned(),
            certificate: row.name,
            names: facts.domains.join(", "),
        });
    }
    Ok(())
}
