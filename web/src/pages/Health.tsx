// The Health page: each node's score (0–100) with the reasons it is not 100, its CPU, memory
// and disk over a chosen range (minute or hour averages of its heartbeats), and — for the host
// operator — the database's latency and pool and the host process. Polled every 30 s.

import { useMemo, useState } from 'react';
import { Link } from 'react-router-dom';
import { healthApi } from '../api/health';
import type { HealthDto, NodeHealthDto, NodeSamplesDto } from '../api/types';
import { LineChart, type LineSeries } from '../components/charts';
import { Badge, FormError, PageHeader, SelectField, usePoll } from '../components/ui';
import { formatAgo, formatMiB, formatPercent } from '../format';

const RANGES = [
  { value: '1h', label: 'Last hour', ms: 3600_000 },
  { value: '24h', label: 'Last 24 hours', ms: 24 * 3600_000 },
  { value: '7d', label: 'Last 7 days', ms: 7 * 24 * 3600_000 },
  { value: '30d', label: 'Last 30 days', ms: 30 * 24 * 3600_000 },
] as const;

const COLORS = { cpu: '#3b82c4', memory: '#8e5bd6', disk: '#e0a030' };

function scoreKind(score: number): 'ok' | 'warn' | 'bad' {
  return score >= 80 ? 'ok' : score >= 50 ? 'warn' : 'bad';
}

const share = (used: number, total: number) => (total > 0 ? Math.round((used * 1000) / total) / 10 : null);

const GIB = 1024 * 1024 * 1024;
/** Bytes in GiB past 1 GiB (disks), else in MiB. */
const formatSize = (bytes: number) => (bytes >= GIB ? `${(bytes / GIB).toFixed(1)} GiB` : formatMiB(bytes));

/** The points on a full time axis: a bucket without heartbeats is a gap in the lines (the
 *  node was down or cut off), not a straight line across it. */
function withGaps(samples: NodeSamplesDto) {
  const step = samples.resolution_seconds;
  const byTime = new Map(samples.points.map((p) => [Math.floor(Date.parse(p.at) / 1000), p]));
  const first = Math.floor(Date.parse(samples.since) / 1000 / step) * step;
  const last = Math.floor(Date.parse(samples.until) / 1000 / step) * step;
  const times: number[] = [];
  for (let t = first; t <= last && times.length < 5000; t += step) times.push(t);
  return { times, points: times.map((t) => byTime.get(t) ?? null) };
}

function NodeChart({ node, rangeMs }: { node: NodeHealthDto; rangeMs: number }) {
  const samples = usePoll<NodeSamplesDto>(
    () => {
      const until = new Date();
      const since = new Date(until.getTime() - rangeMs);
      return healthApi.samples(node.id, since.toISOString(), until.toISOString());
    },
    30_000,
    `${node.id}|${rangeMs}`,
  );
  const points = samples.data?.points;
  const axis = useMemo(() => (samples.data ? withGaps(samples.data) : { times: [], points: [] }), [samples.data]);
  const times = axis.times;
  const series: LineSeries[] = useMemo(
    () => [
      { label: 'CPU %', color: COLORS.cpu, values: axis.points.map((p) => p?.cpu_percent ?? null) },
      { label: 'memory %', color: COLORS.memory, values: axis.points.map((p) => (p ? share(p.memory_used_bytes, p.memory_total_bytes) : null)) },
      { label: 'disk %', color: COLORS.disk, values: axis.points.map((p) => (p ? share(p.disk_used_bytes, p.disk_total_bytes) : null)) },
    ],
    [axis],
  );
  if (samples.error) return <FormError error={samples.error} />;
  if (!points) return <p className="muted">Loading samples…</p>;
  if (points.length === 0) return <p className="muted">No heartbeats in this range.</p>;
  return (
    <div data-testid="node-samples" data-points={points.length}>
      <p className="muted">
        {samples.data!.resolution_seconds === 60 ? 'Averages per minute' : 'Averages per hour'} of {points.reduce((n, p) => n + p.samples, 0)} heartbeats
      </p>
      <LineChart times={times} series={series} unit="%" max={100} testId="node-chart" />
    </div>
  );
}

function NodeCard({ node, rangeMs }: { node: NodeHealthDto; rangeMs: number }) {
  const s = node.host_stats;
  const diskTotal = s?.disk_total_bytes ?? 0;
  return (
    <div className="card" data-testid="node-health" data-node={node.name} data-score={node.score}>
      <div className="health-title">
        <h2>
          <Link to={`/nodes/${node.id}`}>{node.name}</Link>
        </h2>
        <Badge kind={node.status === 'online' ? 'ok' : 'bad'}>{node.status}</Badge>
        <Badge kind={scoreKind(node.score)}>
          <span data-testid="node-score">score {node.score}</span>
        </Badge>
      </div>
      {node.reasons.length > 0 ? (
        <ul data-testid="node-reasons">
          {node.reasons.map((r) => (
            <li key={r}>{r}</li>
          ))}
        </ul>
      ) : (
        <p className="muted">Nothing to report.</p>
      )}
      <p className="muted">
        CPU (10 min) {formatPercent(node.cpu_percent_10m)} · memory {s ? `${formatMiB(s.memory_used_bytes)} of ${formatMiB(s.memory_total_bytes)}` : '—'} · disk{' '}
        {diskTotal > 0 ? `${formatPercent(share(s?.disk_used_bytes ?? 0, diskTotal))} of ${formatSize(diskTotal)}` : '—'} · last heartbeat{' '}
        {formatAgo(node.last_seen_at)}
      </p>
      <NodeChart node={node} rangeMs={rangeMs} />
    </div>
  );
}

function HostCards({ health }: { health: HealthDto }) {
  const { database, host } = health;
  if (!database && !host) return null;
  return (
    <div className="health-grid">
      {database && (
        <div className="card" data-testid="database-health">
          <h2>Database</h2>
          <p>
            {database.backend} ·{' '}
            <span data-testid="database-latency">{database.latency_ms == null ? 'no answer within 1 s' : `${database.latency_ms.toFixed(2)} ms`}</span> per round trip
          </p>
          <p className="muted">
            Pool: {database.pool_size - database.pool_idle} in use, {database.pool_idle} idle, at most {database.pool_max}
          </p>
        </div>
      )}
      {host && (
        <div className="card" data-testid="host-health">
          <h2>Host process</h2>
          <p>
            {formatMiB(host.resident_memory_bytes)} resident · {host.threads} threads · {host.runtime_tasks} tasks
          </p>
          <p className="muted">
            Version {host.version}, up {Math.floor(host.uptime_seconds / 3600)} h {Math.floor((host.uptime_seconds % 3600) / 60)} min, {host.connected_nodes} nodes connected
          </p>
        </div>
      )}
    </div>
  );
}

export function HealthPage() {
  const [range, setRange] = useState<(typeof RANGES)[number]['value']>('1h');
  const rangeMs = RANGES.find((r) => r.value === range)!.ms;
  const health = usePoll(() => healthApi.health(), 30_000);
  return (
    <>
      <PageHeader title="Health">
        <SelectField label="Range" name="range" value={range} onChange={(e) => setRange(e.target.value as typeof range)}>
          {RANGES.map((r) => (
            <option key={r.value} value={r.value}>
              {r.label}
            </option>
          ))}
        </SelectField>
      </PageHeader>
      <FormError error={health.error} />
      {health.data && <HostCards health={health.data} />}
      {health.data?.nodes.length === 0 && <p className="muted">No nodes yet.</p>}
      {health.data?.nodes.map((node) => <NodeCard key={node.id} node={node} rangeMs={rangeMs} />)}
      {health.loading && !health.data && <p className="muted">Loading…</p>}
    </>
  );
}
