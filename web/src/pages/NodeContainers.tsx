import { useCallback, useMemo, useState, type ReactNode } from 'react';
import { Link, useParams, useSearchParams } from 'react-router-dom';
import { containersApi, nodesApi, type ContainerSummary, type StackSummary } from '../api/containers';
import { useUser } from '../auth';
import {
  ActionOutcomeBanner,
  ContainerActionButtons,
  DeleteContainerDialog,
  HealthBadge,
  StackActionButtons,
  StateBadge,
  useContainerActions,
} from '../components/containers';
import { FormError, PageHeader, usePoll } from '../components/ui';
import { CreateContainerDialog } from '../components/CreateContainer';
import { formatMiB, formatPercent, formatPorts, formatTime } from '../format';
import { atLeast } from '../roles';
import { AgentStatusBadge } from './Nodes';

const REFRESH_MS = 3000;
const COLUMNS = 8;

export function containerLink(agentId: string, name: string): string {
  return `/nodes/${encodeURIComponent(agentId)}/containers/${encodeURIComponent(name)}`;
}

export function NodePage() {
  const { id = '' } = useParams();
  const me = useUser();
  const canOperate = atLeast(me.role, 'operator');
  const canDelete = atLeast(me.role, 'admin');
  const [params, setParams] = useSearchParams();
  // Local state first: the router applies search-param changes in a transition, which would
  // leave the controlled checkbox showing its old value for a moment.
  const [showStopped, setShowStoppedState] = useState(() => params.get('all') !== 'false');
  const [creating, setCreating] = useState(false);

  const agent = usePoll(() => nodesApi.agent(id), 5000, id);
  const list = usePoll(() => containersApi.list(id, showStopped), REFRESH_MS, `${id}|${showStopped}`);
  const events = usePoll(() => containersApi.events(id, { limit: 20 }), REFRESH_MS, id);
  const { reload: reloadList } = list;
  const { reload: reloadEvents } = events;
  const reloadAll = useCallback(async () => {
    await Promise.all([reloadList(), reloadEvents()]);
  }, [reloadList, reloadEvents]);
  const actions = useContainerActions(id, reloadAll);
  const [deleting, setDeleting] = useState<string | null>(null);

  const groups = useMemo(() => group(list.data?.containers ?? [], list.data?.stacks ?? []), [list.data]);

  const setShowStopped = (v: boolean) => {
    setShowStoppedState(v);
    setParams(
      (p) => {
        const next = new URLSearchParams(p);
        if (v) next.delete('all');
        else next.set('all', 'false');
        return next;
      },
      { replace: true },
    );
  };

  const row = (c: ContainerSummary) => (
    <tr key={c.id} data-testid={`container-row-${c.name}`} data-state={c.state}>
      <td>
        <Link to={containerLink(id, c.name)}>{c.name}</Link>
        {c.compose_service && <div className="muted small">service {c.compose_service}</div>}
      </td>
      <td className="wrap image-cell" title={c.image}>
        {c.image}
      </td>
      <td className="state-cell">
        <StateBadge state={c.state} testId={`container-state-${c.name}`} />
        <div className="muted small">{c.status}</div>
      </td>
      <td>
        <HealthBadge health={c.health} />
      </td>
      <td className="ports-cell">
        {c.ports.length === 0 ? (
          <span className="muted">—</span>
        ) : (
          formatPorts(c.ports).map((p) => (
            <div key={p}>
              <code>{p}</code>
            </div>
          ))
        )}
      </td>
      <td className="num">{formatPercent(c.cpu_percent)}</td>
      <td className="num" title={c.memory_limit_bytes ? `limit ${formatMiB(c.memory_limit_bytes)}` : undefined}>
        {formatMiB(c.memory_bytes)}
      </td>
      <td className="actions-cell">
        <ContainerActionButtons
          name={c.name}
          state={c.state}
          busy={actions.busy[c.name]}
          canOperate={canOperate}
          canDelete={canDelete}
          onAction={(a) => actions.request(c.name, a)}
          onDelete={() => setDeleting(c.name)}
        />
      </td>
    </tr>
  );

  const title = agent.data?.name ?? 'Node';

  return (
    <>
      <nav className="breadcrumb" aria-label="Breadcrumb">
        <Link to="/nodes">Nodes</Link> <span aria-hidden="true">/</span> <span>{title}</span>
      </nav>
      <PageHeader title={title}>
        {agent.data && (
          <span className="header-facts" data-testid="node-status">
            <AgentStatusBadge agent={agent.data} />
            {agent.data.builtin && <span className="badge">built-in</span>}
            <span className="muted">v{agent.data.version}</span>
          </span>
        )}
        {canOperate && (
          <button type="button" className="btn btn-primary" onClick={() => setCreating(true)}>
            New container
          </button>
        )}
      </PageHeader>
      <CreateContainerDialog
        agentId={id}
        open={creating}
        onClose={() => setCreating(false)}
        onCreated={(text) => {
          actions.setOutcome({ kind: text.includes('Policy warning') ? 'warning' : 'success', text });
          void reloadList();
        }}
      />
      <FormError error={agent.error} />

      <div className="toolbar">
        <label className="toggle">
          <input type="checkbox" checked={showStopped} onChange={(e) => setShowStopped(e.target.checked)} data-testid="show-stopped" />
          Show stopped
        </label>
        <span className="muted small" aria-live="off">
          {list.loadedAt ? `Updated ${formatTime(new Date(list.loadedAt).toISOString())}` : list.loading ? 'Loading…' : ''}
        </span>
      </div>

      <ActionOutcomeBanner outcome={actions.outcome} onDismiss={() => actions.setOutcome(null)} />
      {actions.confirmDialog}
      <FormError error={list.error} />

      <div className="table-wrap">
        <table data-testid="containers-table" className="containers-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Image</th>
              <th scope="col">State</th>
              <th scope="col">Health</th>
              <th scope="col">Ports</th>
              <th scope="col" className="num">
                CPU
              </th>
              <th scope="col" className="num">
                Memory
              </th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          {groups.stacks.map(({ stack, containers }) => (
            <tbody key={`stack-${stack.name}`} data-testid={`stack-${stack.name}`} className="group">
              <GroupHeader
                title={
                  <>
                    <span className="group-kind">Stack</span> <strong>{stack.name}</strong>{' '}
                    <span className="muted">
                      {stack.running}/{stack.containers} running
                    </span>
                  </>
                }
                actions={
                  canOperate ? (
                    <StackActionButtons
                      project={stack.name}
                      busy={actions.busy[`stack:${stack.name}`]}
                      onAction={(a) => actions.request(stack.name, a, true)}
                    />
                  ) : null
                }
              />
              {containers.map(row)}
            </tbody>
          ))}
          {groups.standalone.length > 0 && (
            <tbody data-testid="standalone-containers" className="group">
              <GroupHeader title={<strong>Standalone</strong>} actions={null} />
              {groups.standalone.map(row)}
            </tbody>
          )}
          {list.data && list.data.containers.length === 0 && (
            <tbody>
              <tr>
                <td colSpan={COLUMNS} className="muted">
                  {showStopped ? 'No containers on this node.' : 'No running containers. Turn on “Show stopped” to see the others.'}
                </td>
              </tr>
            </tbody>
          )}
          {!list.data && (
            <tbody>
              <tr>
                <td colSpan={COLUMNS} className="muted">
                  {list.loading ? 'Loading…' : 'Containers could not be loaded.'}
                </td>
              </tr>
            </tbody>
          )}
        </table>
      </div>

      <section className="section" aria-labelledby="events-heading">
        <h2 id="events-heading">Events</h2>
        <FormError error={events.error} />
        <div className="table-wrap">
          <table data-testid="events-table">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Container</th>
                <th scope="col">Action</th>
                <th scope="col" className="num">
                  Exit code
                </th>
              </tr>
            </thead>
            <tbody>
              {events.data?.events.map((ev) => (
                <tr key={ev.id} data-testid="event-row" data-action={ev.action}>
                  <td title={ev.time}>{formatTime(ev.time)}</td>
                  <td title={ev.container_id}>{ev.container_name || ev.container_id.slice(0, 12)}</td>
                  <td>
                    <code>{ev.action}</code>
                  </td>
                  <td className="num">{ev.exit_code ?? '—'}</td>
                </tr>
              ))}
              {events.data?.events.length === 0 && (
                <tr>
                  <td colSpan={4} className="muted">
                    No Docker events recorded yet.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      </section>

      <DeleteContainerDialog
        agentId={id}
        name={deleting}
        onClose={() => setDeleting(null)}
        onDeleted={(name) => {
          actions.setOutcome({ kind: 'success', text: `Deleted ${name}.` });
          void reloadAll();
        }}
      />
    </>
  );
}

function GroupHeader({ title, actions }: { title: ReactNode; actions: ReactNode }) {
  return (
    <tr className="group-header">
      <th scope="rowgroup" colSpan={COLUMNS}>
        <div className="group-header-inner">
          <span>{title}</span>
          {actions}
        </div>
      </th>
    </tr>
  );
}

interface Groups {
  stacks: { stack: StackSummary; containers: ContainerSummary[] }[];
  standalone: ContainerSummary[];
}

/** Containers by compose project (in the order of `stacks`, then any project it lacks), the rest standalone. */
function group(containers: ContainerSummary[], stacks: StackSummary[]): Groups {
  const byProject = new Map<string, ContainerSummary[]>();
  const standalone: ContainerSummary[] = [];
  for (const c of containers) {
    if (c.compose_project) {
      const list = byProject.get(c.compose_project) ?? [];
      list.push(c);
      byProject.set(c.compose_project, list);
    } else {
      standalone.push(c);
    }
  }
  const out: Groups['stacks'] = [];
  const seen = new Set<string>();
  for (const s of stacks) {
    const members = byProject.get(s.name);
    if (!members) continue;
    seen.add(s.name);
    out.push({ stack: s, containers: members });
  }
  for (const [name, members] of byProject) {
    if (seen.has(name)) continue;
    out.push({
      stack: { name, containers: members.length, running: members.filter((c) => c.state === 'running').length },
      containers: members,
    });
  }
  return { stacks: out, standalone };
}
