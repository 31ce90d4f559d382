import { Suspense, lazy, useEffect, useState, type ReactNode } from 'react';
import { Link, useNavigate, useParams, useSearchParams } from 'react-router-dom';
import { ApiError, toApiError } from '../api/client';
import { containersApi, nodesApi, type ContainerDetail, type EnvVar, type RevealedEnv } from '../api/containers';
import { useUser } from '../auth';
import {
  ActionOutcomeBanner,
  ContainerActionButtons,
  DeleteContainerDialog,
  HealthBadge,
  StateBadge,
  useContainerActions,
} from '../components/containers';
import { FormError, LabelChips, Notice, PageHeader, usePoll } from '../components/ui';
import { formatPorts, formatTime } from '../format';
import { atLeast } from '../roles';
import { LogsView } from './container/Logs';

// xterm.js is large: load it only when the Terminal tab is opened.
const TerminalView = lazy(() => import('./container/Terminal').then((m) => ({ default: m.TerminalView })));

const TABS = ['overview', 'environment', 'mounts', 'network', 'config', 'logs', 'terminal'] as const;
type Tab = (typeof TABS)[number];
const TAB_LABEL: Record<Tab, string> = {
  overview: 'Overview',
  environment: 'Environment',
  mounts: 'Mounts',
  network: 'Network',
  config: 'Config',
  logs: 'Logs',
  terminal: 'Terminal',
};

function isTab(v: string | null): v is Tab {
  return v !== null && (TABS as readonly string[]).includes(v);
}

export function ContainerPage() {
  const { id = '', cid = '' } = useParams();
  // A new container starts afresh (tabs, revealed values, sockets).
  return <ContainerView key={`${id}/${cid}`} id={id} cid={cid} />;
}

function ContainerView({ id, cid }: { id: string; cid: string }) {
  const me = useUser();
  const navigate = useNavigate();
  const canOperate = atLeast(me.role, 'operator');
  const canDelete = atLeast(me.role, 'admin');
  const [params, setParams] = useSearchParams();
  // Local state first (the router applies search-param changes in a transition); the URL
  // keeps the tab for reloads and links.
  const [tab, setTab] = useState<Tab>(() => {
    const t = params.get('tab');
    return isTab(t) ? t : 'overview';
  });
  // Tabs with live connections (logs follow, terminal) stay mounted once opened.
  const [opened, setOpened] = useState<Set<Tab>>(() => new Set([tab]));
  useEffect(() => {
    setOpened((s) => (s.has(tab) ? s : new Set(s).add(tab)));
  }, [tab]);

  const agent = usePoll(() => nodesApi.agent(id), 10000, id);
  const detail = usePoll(() => containersApi.detail(id, cid), 5000, `${id}|${cid}`);
  const actions = useContainerActions(id, detail.reload);
  const [deleting, setDeleting] = useState<string | null>(null);

  const c = detail.data;
  const nodePath = `/nodes/${encodeURIComponent(id)}`;

  const selectTab = (t: Tab) => {
    setTab(t);
    setParams(
      (p) => {
        const next = new URLSearchParams(p);
        if (t === 'overview') next.delete('tab');
        else next.set('tab', t);
        return next;
      },
      { replace: true },
    );
  };

  return (
    <>
      <nav className="breadcrumb" aria-label="Breadcrumb">
        <Link to="/nodes">Nodes</Link> <span aria-hidden="true">/</span>{' '}
        <Link to={nodePath}>{agent.data?.name ?? 'Node'}</Link> <span aria-hidden="true">/</span> <span>{c?.name ?? cid}</span>
      </nav>
      <PageHeader title={c?.name ?? cid}>
        {c && (
          <>
            <StateBadge state={c.state} testId="container-state" />
            <ContainerActionButtons
              name={c.name}
              state={c.state}
              busy={actions.busy[c.name]}
              canOperate={canOperate}
              canDelete={canDelete}
              onAction={(a) => actions.request(c.name, a)}
              onDelete={() => setDeleting(c.name)}
            />
          </>
        )}
      </PageHeader>
      <ActionOutcomeBanner outcome={actions.outcome} onDismiss={() => actions.setOutcome(null)} />
      {actions.confirmDialog}
      <FormError error={detail.error} />
      {!c && detail.loading && <p className="muted">Loading…</p>}

      {c && (
        <>
          <div className="tabs" role="tablist" aria-label="Container">
            {TABS.map((t) => (
              <button
                key={t}
                type="button"
                role="tab"
                id={`tab-${t}`}
                aria-selected={tab === t}
                aria-controls={`panel-${t}`}
                className={`tab${tab === t ? ' tab-active' : ''}`}
                data-testid={`tab-${t}`}
                onClick={() => selectTab(t)}
              >
                {TAB_LABEL[t]}
              </button>
            ))}
          </div>
          {TABS.filter((t) => opened.has(t) || t === tab).map((t) => (
            <div key={t} role="tabpanel" id={`panel-${t}`} aria-labelledby={`tab-${t}`} hidden={t !== tab} className="tab-panel">
              {t === 'overview' && <Overview c={c} />}
              {t === 'environment' && <Environment agentId={id} c={c} canReveal={canDelete} />}
              {t === 'mounts' && <Mounts c={c} />}
              {t === 'network' && <Network c={c} />}
              {t === 'config' && <Config c={c} />}
              {t === 'logs' && <LogsView agentId={id} cid={c.name} canFollow={canOperate} />}
              {t === 'terminal' && (
                <Suspense fallback={<p className="muted">Loading the terminal…</p>}>
                  <TerminalView agentId={id} cid={c.name} canConnect={canDelete} active={tab === 'terminal'} running={c.state === 'running'} />
                </Suspense>
              )}
            </div>
          ))}
        </>
      )}

      <DeleteContainerDialog
        agentId={id}
        name={deleting}
        onClose={() => setDeleting(null)}
        onDeleted={() => navigate(nodePath, { replace: true })}
      />
    </>
  );
}

// ---- tabs ---------------------------------------------------------------------

function Fact({ label, children }: { label: string; children: ReactNode }) {
  return (
    <>
      <dt>{label}</dt>
      <dd>{children}</dd>
    </>
  );
}

function Words({ words }: { words: string[] }) {
  if (words.length === 0) return <span className="muted">—</span>;
  return <code>{words.map(quoteArg).join(' ')}</code>;
}

/** An argument as a shell would need it typed (quoted when it has spaces or quotes). */
function quoteArg(a: string): string {
  return a === '' || /[\s'"\\$`]/.test(a) ? `'${a.replace(/'/g, `'\\''`)}'` : a;
}

function Overview({ c }: { c: ContainerDetail }) {
  const ports = formatPorts(c.ports);
  return (
    <div className="card" data-testid="overview">
      <dl className="facts">
        <Fact label="State">
          <StateBadge state={c.state} /> <span className="muted">{c.status}</span>
        </Fact>
        <Fact label="Image">
          <code>{c.image}</code>
          {c.image_id && (
            <div className="muted small" title={c.image_id}>
              {c.image_id.replace(/^sha256:/, '').slice(0, 12)}
            </div>
          )}
        </Fact>
        <Fact label="Id">
          <code title={c.id}>{c.id.slice(0, 12)}</code>
        </Fact>
        <Fact label="Created">{formatTime(c.created_at)}</Fact>
        <Fact label="Started">{formatTime(c.started_at)}</Fact>
        {c.finished_at && <Fact label="Finished">{formatTime(c.finished_at)}</Fact>}
        {c.exit_code != null && c.state !== 'running' && <Fact label="Exit code">{c.exit_code}</Fact>}
        <Fact label="Restart count">{c.restart_count}</Fact>
        <Fact label="Health">
          <HealthBadge health={c.health} />
        </Fact>
        <Fact label="Ports">
          {ports.length === 0 ? (
            <span className="muted">—</span>
          ) : (
            ports.map((p) => (
              <div key={p}>
                <code>{p}</code>
              </div>
            ))
          )}
        </Fact>
        <Fact label="Command">
          <Words words={[...c.entrypoint, ...c.command]} />
        </Fact>
        <Fact label="Restart policy">{c.restart_policy || 'no'}</Fact>
        {c.compose_project && (
          <Fact label="Compose">
            stack <strong>{c.compose_project}</strong>
            {c.compose_service && <>, service <strong>{c.compose_service}</strong></>}
          </Fact>
        )}
        <Fact label="Labels">
          <LabelChips labels={c.labels} />
        </Fact>
      </dl>
    </div>
  );
}

function Environment({ agentId, c, canReveal }: { agentId: string; c: ContainerDetail; canReveal: boolean }) {
  const [revealed, setRevealed] = useState<RevealedEnv | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);

  // Revealed values belong to one container.
  useEffect(() => {
    setRevealed(null);
    setError(null);
  }, [agentId, c.id]);

  async function reveal() {
    setBusy(true);
    setError(null);
    try {
      setRevealed(await containersApi.revealEnv(agentId, c.name));
    } catch (e) {
      setError(toApiError(e));
    } finally {
      setBusy(false);
    }
  }

  const env: EnvVar[] = revealed?.env ?? c.env;
  return (
    <div className="card">
      <div className="toolbar">
        <span className="muted">
          {env.length} variable{env.length === 1 ? '' : 's'}
          {revealed ? ', values shown' : ', values hidden'}
        </span>
        {canReveal &&
          (revealed ? (
            <button type="button" className="btn btn-small" onClick={() => setRevealed(null)} data-testid="env-hide">
              Hide values
            </button>
          ) : (
            <button type="button" className="btn btn-small" onClick={() => void reveal()} disabled={busy} data-testid="env-reveal">
              {busy ? 'Revealing…' : 'Reveal values'}
            </button>
          ))}
      </div>
      {canReveal && !revealed && <p className="hint">Revealing the values is recorded in the audit log.</p>}
      {revealed && <Notice kind="warning">These values may be secrets. This reveal was recorded in the audit log.</Notice>}
      <FormError error={error} />
      <div className="table-wrap">
        <table data-testid="env-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Value</th>
            </tr>
          </thead>
          <tbody>
            {env.map((v, i) => (
              <tr key={`${v.name}-${i}`} data-testid={`env-row-${v.name}`}>
                <td>
                  <code>{v.name}</code>
                </td>
                <td className="wrap" data-testid="env-value">
                  {v.value == null ? <span className="masked">••••</span> : <code>{v.value}</code>}
                </td>
              </tr>
            ))}
            {env.length === 0 && (
              <tr>
                <td colSpan={2} className="muted">
                  No environment variables.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </div>
  );
}

function Mounts({ c }: { c: ContainerDetail }) {
  return (
    <div className="table-wrap">
      <table data-testid="mounts-table">
        <thead>
          <tr>
            <th scope="col">Type</th>
            <th scope="col">Source</th>
            <th scope="col">Destination</th>
            <th scope="col">Mode</th>
            <th scope="col">Access</th>
          </tr>
        </thead>
        <tbody>
          {c.mounts.map((m, i) => (
            <tr key={`${m.destination}-${i}`}>
              <td>
                <code>{m.kind}</code>
              </td>
              <td className="wrap">
                {m.name && m.kind === 'volume' ? (
                  <>
                    <strong>{m.name}</strong>
                    <div className="muted small">
                      <code>{m.source}</code>
                    </div>
                  </>
                ) : (
                  <code>{m.source || '—'}</code>
                )}
              </td>
              <td className="wrap">
                <code>{m.destination}</code>
              </td>
              <td>{m.mode || '—'}</td>
              <td>{m.read_only ? 'read-only' : 'read-write'}</td>
            </tr>
          ))}
          {c.mounts.length === 0 && (
            <tr>
              <td colSpan={5} className="muted">
                No mounts.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

function Network({ c }: { c: ContainerDetail }) {
  const ports = formatPorts(c.ports);
  return (
    <>
      <div className="table-wrap">
        <table data-testid="networks-table">
          <thead>
            <tr>
              <th scope="col">Network</th>
              <th scope="col">IP address</th>
              <th scope="col">Gateway</th>
              <th scope="col">MAC address</th>
              <th scope="col">Aliases</th>
            </tr>
          </thead>
          <tbody>
            {c.networks.map((n) => (
              <tr key={n.name}>
                <td>{n.name}</td>
                <td>
                  <code>{n.ip_address || '—'}</code>
                </td>
                <td>
                  <code>{n.gateway || '—'}</code>
                </td>
                <td>
                  <code>{n.mac_address || '—'}</code>
                </td>
                <td className="wrap">{n.aliases.length ? n.aliases.join(', ') : <span className="muted">—</span>}</td>
              </tr>
            ))}
            {c.networks.length === 0 && (
              <tr>
                <td colSpan={5} className="muted">
                  Not attached to any network.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <h3 className="subheading">Ports</h3>
      {ports.length === 0 ? (
        <p className="muted">No ports exposed.</p>
      ) : (
        <ul className="plain-list" data-testid="ports-list">
          {ports.map((p) => (
            <li key={p}>
              <code>{p}</code>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

function Config({ c }: { c: ContainerDetail }) {
  const raw = {
    command: c.command,
    entrypoint: c.entrypoint,
    working_dir: c.working_dir,
    user: c.user,
    hostname: c.hostname,
    restart_policy: c.restart_policy,
    labels: c.labels,
  };
  return (
    <div className="card">
      <dl className="facts">
        <Fact label="Entrypoint">
          <Words words={c.entrypoint} />
        </Fact>
        <Fact label="Command">
          <Words words={c.command} />
        </Fact>
        <Fact label="Working dir">{c.working_dir ? <code>{c.working_dir}</code> : <span className="muted">—</span>}</Fact>
        <Fact label="User">{c.user ? <code>{c.user}</code> : <span className="muted">— (image default)</span>}</Fact>
        <Fact label="Hostname">{c.hostname ? <code>{c.hostname}</code> : <span className="muted">—</span>}</Fact>
      </dl>
      <h3 className="subheading">As JSON</h3>
      <pre className="raw" data-testid="config-raw">
        {JSON.stringify(raw, null, 2)}
      </pre>
    </div>
  );
}
