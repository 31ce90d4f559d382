//! The nodes' CPU, memory and disk over time (issue 17's Health page): each heartbeat's figures
//! added into the minute and the hour it falls in, as sums and counts (a bucket's average is
//! exact however many heartbeats it took); minutes kept two days, hours ninety.

use crate::{Result, Store, Tx, now_ms};

/// The two resolutions kept, in seconds.
pub const SAMPLE_MINUTE: i64 = 60;
pub const SAMPLE_HOUR: i64 = 3600;
/// How long each is kept.
pub const MINUTES_KEPT_MS: i64 = 2 * 24 * 3600 * 1000;
pub const HOURS_KEPT_MS: i64 = 90 * 24 * 3600 * 1000;

/// One heartbeat's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeSample {
    /// Absent on an agent's first heartbeat (CPU is measured between two).
    pub cpu_percent: Option<f64>,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
}

/// One bucket: averages over its heartbeats.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeSamplePoint {
    /// The bucket's start (ms since the epoch).
    pub at_ms: i64,
    /// Heartbeats in the bucket.
    pub samples: i64,
    /// Heartbeats in the bucket that carried a CPU figure (an agent's first one does not).
    pub cpu_samples: i64,
    pub cpu_percent: Option<f64>,
    pub cpu_max_percent: Option<f64>,
    pub memory_used_bytes: f64,
    pub memory_total_bytes: i64,
    pub disk_used_bytes: f64,
    pub disk_total_bytes: i64,
}

#[derive(sqlx::FromRow)]
struct BucketRow {
    bucket_ms: i64,
    samples: i64,
    cpu_samples: i64,
    cpu_sum: f64,
    cpu_max: f64,
    memory_used_sum: f64,
    memory_total_bytes: i64,
    disk_used_sum: f64,
    disk_total_bytes: i64,
}

impl From<BucketRow> for NodeSamplePoint {
    fn from(r: BucketRow) -> NodeSamplePoint {
        let n = r.samples.max(1) as f64;
        let cpu = (r.cpu_samples > 0).then(|| r.cpu_sum / r.cpu_samples as f64);
        NodeSamplePoint {
            at_ms: r.bucket_ms,
            samples: r.samples,
            cpu_samples: r.cpu_samples,
            cpu_percent: cpu,
            cpu_max_percent: (r.cpu_samples > 0).then_some(r.cpu_max),
            memory_used_bytes: r.memory_used_sum / n,
            memory_total_bytes: r.memory_total_bytes,
            disk_used_bytes: r.disk_used_sum / n,
            disk_total_bytes: r.disk_total_bytes,
        }
    }
}

/// Bytes as a database integer (a node reporting more than i64 holds is capped).
fn db_bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Tx {
    /// Adds a heartbeat's figures (taken at `at_ms`) into its minute and its hour.
    pub async fn record_node_sample(
        &mut self,
        agent_id: &str,
        at_ms: i64,
        sample: &NodeSample,
    ) -> Result<()> {
        let org = self.org_id.clone();
        let cpu = sample.cpu_percent.filter(|c| c.is_finite());
        for resolution in [SAMPLE_MINUTE, SAMPLE_HOUR] {
            let bucket = at_ms.div_euclid(resolution * 1000) * resolution * 1000;
            on_tx!(self, c => sqlx::query(
                "INSERT INTO node_samples (org_id, agent_id, resolution_seconds, bucket_ms, samples, \
                 cpu_samples, cpu_sum, cpu_max, memory_used_sum, memory_total_bytes, disk_used_sum, \
                 disk_total_bytes) VALUES ($1, $2, $3, $4, 1, $5, $6, $6, $7, $8, $9, $10) \
                 ON CONFLICT (agent_id, resolution_seconds, bucket_ms) DO UPDATE SET \
                 samples = node_samples.samples + 1, \
                 cpu_samples = node_samples.cpu_samples + excluded.cpu_samples, \
                 cpu_sum = node_samples.cpu_sum + excluded.cpu_sum, \
                 cpu_max = CASE WHEN excluded.cpu_samples > 0 AND excluded.cpu_max > node_samples.cpu_max \
                     THEN excluded.cpu_max ELSE node_samples.cpu_max END, \
                 memory_used_sum = node_samples.memory_used_sum + excluded.memory_used_sum, \
                 memory_total_bytes = excluded.memory_total_bytes, \
                 disk_used_sum = node_samples.disk_used_sum + excluded.disk_used_sum, \
                 disk_total_bytes = excluded.disk_total_bytes \
                 WHERE node_samples.org_id = excluded.org_id",
            )
            .bind(&org)
            .bind(agent_id)
            .bind(resolution as i32)
            .bind(bucket)
            .bind(i32::from(cpu.is_some()))
            .bind(cpu.unwrap_or(0.0))
            .bind(sample.memory_used_bytes as f64)
            .bind(db_bytes(sample.memory_total_bytes))
            .bind(sample.disk_used_bytes as f64)
            .bind(db_bytes(sample.disk_total_bytes))
            .execute(&mut **c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// An agent's buckets of `resolution_seconds` ([`SAMPLE_MINUTE`] or [`SAMPLE_HOUR`]) starting in
    /// `[since_ms, until_ms)`, oldest first.
    pub async fn node_samples(
        &mut self,
        agent_id: &str,
        resolution_seconds: i64,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<NodeSamplePoint>> {
        let org = self.org_id.clone();
        let rows: Vec<BucketRow> = on_tx!(self, c => sqlx::query_as(
            "SELECT bucket_ms, CAST(samples AS BIGINT) AS samples, \
             CAST(cpu_samples AS BIGINT) AS cpu_samples, cpu_sum, cpu_max, memory_used_sum, \
             memory_total_bytes, disk_used_sum, disk_total_bytes FROM node_samples \
             WHERE org_id = $1 AND agent_id = $2 AND resolution_seconds = $3 \
             AND bucket_ms >= $4 AND bucket_ms < $5 ORDER BY bucket_ms",
        )
        .bind(&org)
        .bind(agent_id)
        .bind(resolution_seconds as i32)
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&mut **c)
        .await)?;
        Ok(rows.into_iter().map(NodeSamplePoint::from).collect())
    }
}

impl Store {
    /// Deletes minutes older than two days and hours older than ninety, in every organisation;
    /// the number of buckets deleted.
    pub async fn apply_node_sample_retention(&self, now: i64) -> Result<u64> {
        let mut deleted = 0;
        for org in self.organization_ids().await? {
            let mut tx = self.write(&org).await?;
            for (resolution, kept) in [
                (SAMPLE_MINUTE, MINUTES_KEPT_MS),
                (SAMPLE_HOUR, HOURS_KEPT_MS),
            ] {
                let org_id = tx.org_id.clone();
                deleted += on_tx!(tx, c => sqlx::query(
                    "DELETE FROM node_samples WHERE org_id = $1 AND resolution_seconds = $2 \
                     AND bucket_ms < $3",
                )
                .bind(&org_id)
                .bind(resolution as i32)
                .bind(now.saturating_sub(kept))
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()))?;
            }
            tx.commit().await?;
        }
        Ok(deleted)
    }

    /// [`Store::apply_node_sample_retention`] as of now.
    pub async fn apply_node_sample_retention_now(&self) -> Result<u64> {
        self.apply_node_sample_retention(now_ms()).await
    }
}
