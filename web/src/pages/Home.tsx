import { useEffect, useMemo, useState, type ReactNode } from 'react';
import { Link } from 'react-router-dom';
import { useUser } from '../auth';
import { alertsApi, type AlertEvent } from '../api/alerts';
import { containersApi, nodesApi, type Agent, type ContainerSummary } from '../api/containers';
import { logsApi } from '../api/logs';
import { proxiesApi, type Certificate } from '../api/proxies';
import type { LogVolumeDto } from '../api/types';
import { StackedBars } from '../components/charts';
import { Badge, Notice, PageHeader, useLoad } from '../components/ui';
import { formatTime } from '../format';
import { PAGES } from '../pages';
import { atLeast, roleLabel } from '../roles';

/** Days before expiry from which a certificate needs attention. */
const EXPIRY_DAYS = 14;

interface Attention {
  offline: Agent[];
  firing: AlertEvent[];
  containers: { agent: Agent; container: ContainerSummary }[];
  certificates: { agent: Agent; certificate: Certificate }[];
  errors: LogVolumeDto | null;
  /** Parts that could not be read (a node that did not answer, …). */
  unavailable: string[];
}

/** A container that crashed (exited non-zero, dead, restarting) or reports itself unhealthy. */
function needsAttention(c: ContainerSummary): boolean {
  if (c.health === 'unhealthy' || c.state === 'dead' || c.state === 'restarting') return true;
  return c.state === 'exited' && !/^Exited \(0\)/.test(c.status);
}

async function loadAttention(): Promise<Attention> {
  const unavailable: string[] = [];
  const agents = (await nodesApi.agents()).filter((a) => !a.revoked);
  const online = agents.filter((a) => a.status === 'online');
  const [firing, errors, perNode] = await Promise.all([
    alertsApi.history().then(
      (events) => events.filter((e) => e.state === 'firing'),
      () => {
        unavailable.push('alerts');
        return [] as AlertEvent[];
      },
    ),
    logsApi.volume({ level: 'error' }, 300).catch(() => {
      unavailable.push('logs');
      return null;
    }),
    Promise.all(
      online.map(async (agent) => {
        // Both readable by every role (a viewer's dashboard makes no call it may not).
        const [list, hosts] = await Promise.all([
          containersApi.list(agent.id, true).catch(() => {
            unavailable.push(`containers of ${agent.name}`);
            return null;
          }),
          proxiesApi.list(agent.id).catch(() => {
            unavailable.push(`proxy hosts of ${agent.name}`);
            return [];
          }),
        ]);
        const soon = Date.now() + EXPIRY_DAYS * 86_400_000;
        return {
          containers: (list?.containers ?? []).filter(needsAttention).map((container) => ({ agent, container })),
          certificates: hosts
            .flatMap((h) => (h.certificate ? [h.certificate] : []))
            .filter((c) => c.source !== 'placeholder' && (Date.parse(c.not_after) < soon || !!c.error))
            .map((certificate) => ({ agent, certificate })),
        };
      }),
    ),
  ]);
  return {
    offline: agents.filter((a) => a.status !== 'online'),
    firing,
    containers: perNode.flatMap((n) => n.containers),
    certificates: perNode.flatMap((n) => n.certificates),
    errors,
    unavailable,
  };
}

function AttentionCard({ title, count, testId, children }: { title: string; count: number; testId: string; children?: ReactNode }) {
  return (
    <div className="card attention" data-testid={testId} data-count={count}>
      <h3>
        {title} <Badge kind={count > 0 ? 'bad' : 'ok'}>{count}</Badge>
      </h3>
      {count > 0 && children}
    </div>
  );
}

function AttentionView() {
  const [attention, setAttention] = useState<Attention | null>(null);
  useEffect(() => {
    let live = true;
    const load = () =>
      loadAttention().then(
        (a) => live && setAttention(a),
        () => live && setAttention(null),
      );
    void load();
    const timer = window.setInterval(() => void load(), 30_000);
    return () => {
      live = false;
      window.clearInterval(timer);
    };
  }, []);
  const errorSeries = useMemo(() => {
    if (!attention?.errors) return null;
    const b = attention.errors.buckets;
    return { times: b.map((x) => Date.parse(x.start) / 1000), series: [{ label: 'errors', color: '#d64545', values: b.map((x) => x.error) }] };
  }, [attention]);
  if (!attention) return <p className="muted">Looking for what needs attention…</p>;
  const errorCount = attention.errors?.buckets.reduce((n, b) => n + b.error, 0) ?? 0;
  const total = attention.offline.length + attention.firing.length + attention.containers.length + attention.certificates.length;
  return (
    <section data-testid="attention" data-total={total}>
      {total === 0 && <Notice kind="success">Nothing needs attention: every node is online, no alert is firing, no container crashed and no certificate expires within {EXPIRY_DAYS} days.</Notice>}
      <div className="attention-grid">
        <AttentionCard title="Nodes offline" count={attention.offline.length} testId="attention-offline">
          <ul>
            {attention.offline.map((a) => (
              <li key={a.id}>
                <Link to={`/nodes/${a.id}`}>{a.name}</Link> <span className="muted">last seen {formatTime(a.last_seen_at)}</span>
              </li>
            ))}
          </ul>
        </AttentionCard>
        <AttentionCard title="Alerts firing" count={attention.firing.length} testId="attention-alerts">
          <ul>
            {attention.firing.slice(0, 5).map((e) => (
              <li key={e.id}>
                <Link to="/alerts/history">{e.rule_name ?? e.kind}</Link>: {e.summary}
              </li>
            ))}
          </ul>
        </AttentionCard>
        <AttentionCard title="Containers crashed or unhealthy" count={attention.containers.length} testId="attention-containers">
          <ul>
            {attention.containers.slice(0, 8).map(({ agent, container }) => (
              <li key={`${agent.id}/${container.id}`}>
                <Link to={`/nodes/${agent.id}/containers/${encodeURIComponent(container.name)}`}>{container.name}</Link>{' '}
                <span className="muted">
                  on {agent.name}: {container.health === 'unhealthy' ? 'unhealthy' : container.status}
                </span>
              </li>
            ))}
          </ul>
        </AttentionCard>
        <AttentionCard title={`Certificates expiring within ${EXPIRY_DAYS} days`} count={attention.certificates.length} testId="attention-certificates">
          <ul>
            {attention.certificates.map(({ agent, certificate }) => (
              <li key={`${agent.id}/${certificate.host_id}`}>
                <Link to="/proxies">{certificate.domains.join(', ')}</Link>{' '}
                <span className="muted">{certificate.error ? `renewal failed: ${certificate.error}` : `expires ${formatTime(certificate.not_after)}`}</span>
              </li>
            ))}
          </ul>
        </AttentionCard>
        <div className="card attention" data-testid="attention-errors" data-count={errorCount}>
          <h3>
            <Link to="/logs">Error lines in the last hour</Link> <Badge kind={errorCount > 0 ? 'warn' : 'ok'}>{errorCount}</Badge>
          </h3>
          {errorSeries && errorCount > 0 && <StackedBars times={errorSeries.times} series={errorSeries.series} height={90} />}
        </div>
      </div>
      {attention.unavailable.length > 0 && <p className="muted">Not available right now: {attention.unavailable.join(', ')}.</p>}
    </section>
  );
}

export function HomePage() {
  const user = useUser();
  // A new organisation has no node yet: point at its first steps.
  const agents = useLoad(() => nodesApi.agents());
  const noNodes = agents.data !== null && agents.data.filter((a) => !a.revoked).length === 0;
  const shortcuts = PAGES.filter((p) => p.nav && p.path !== '/' && atLeast(user.role, p.minRole));
  return (
    <>
      <PageHeader title="Dashboard" />
      <p>
        Signed in as <strong>{user.name}</strong> ({user.email}), role <strong>{roleLabel(user.role)}</strong>.
      </p>
      {noNodes && (
        <Notice>
          This organisation has no node yet.{' '}
          <Link to="/onboarding" data-testid="get-started">
            Get started
          </Link>{' '}
          by connecting your first Docker host.
        </Notice>
      )}
      {!user.mfa_enabled && (
        <Notice kind="warning">
          Two-factor authentication is off for your account. <Link to="/profile">Turn it on in your profile</Link>.
        </Notice>
      )}
      <AttentionView />
      <div className="tiles">
        {shortcuts.map((p) => (
          <Link key={p.path} to={p.path} className="card tile">
            {p.label}
          </Link>
        ))}
      </div>
    </>
  );
}
