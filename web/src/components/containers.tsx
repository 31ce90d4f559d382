// Building blocks shared by the node page and the container detail page: state and health
// badges, the start / stop / restart / delete buttons with their bookkeeping, and the
// type-the-name-to-delete dialog.

import { useCallback, useState, type FormEvent, type ReactNode } from 'react';
import { ApiError, toApiError } from '../api/client';
import { containersApi, type ContainerAction, type ContainerActionResult, type StackActionResult } from '../api/containers';
import { Badge, CheckboxField, ConfirmDialog, Dialog, FormError } from './ui';
import { warningText } from '../api/policies';

type BadgeKind = 'neutral' | 'ok' | 'warn' | 'bad';

export function stateKind(state: string): BadgeKind {
  switch (state) {
    case 'running':
      return 'ok';
    case 'exited':
    case 'dead':
      return 'bad';
    case 'created':
    case 'paused':
    case 'restarting':
    case 'removing':
      return 'warn';
    default:
      return 'neutral';
  }
}

export function StateBadge({ state, testId }: { state: string; testId?: string }) {
  return (
    <span data-testid={testId} data-state={state}>
      <Badge kind={stateKind(state)}>{state}</Badge>
    </span>
  );
}

export function HealthBadge({ health }: { health: string | null }) {
  if (!health) return <span className="muted">—</span>;
  const kind: BadgeKind = health === 'healthy' ? 'ok' : health === 'unhealthy' ? 'bad' : 'warn';
  return <Badge kind={kind}>{health}</Badge>;
}

/** True while there is a process to stop (running, restarting or paused). */
export function isUp(state: string): boolean {
  return state === 'running' || state === 'restarting' || state === 'paused';
}

const VERB: Record<ContainerAction, string> = { start: 'Started', stop: 'Stopped', restart: 'Restarted' };
const LABEL: Record<ContainerAction, string> = { start: 'Start', stop: 'Stop', restart: 'Restart' };
export const CONTAINER_ACTIONS: ContainerAction[] = ['start', 'stop', 'restart'];

export interface ActionOutcome {
  kind: 'success' | 'warning' | 'error';
  text: string;
}

/** Runs container and stack actions: which target is busy, and the last outcome to show. */
export function useContainerActions(agentId: string, onChanged: () => void | Promise<void>) {
  const [busy, setBusy] = useState<Record<string, ContainerAction | 'delete'>>({});
  const [outcome, setOutcome] = useState<ActionOutcome | null>(null);

  const run = useCallback(
    async (key: string, action: ContainerAction, fn: () => Promise<ActionOutcome>) => {
      setBusy((b) => ({ ...b, [key]: action }));
      setOutcome(null);
      try {
        setOutcome(await fn());
      } catch (e) {
        setOutcome({ kind: 'error', text: toApiError(e).message });
      } finally {
        setBusy((b) => {
          const next = { ...b };
          delete next[key];
          return next;
        });
        await onChanged();
      }
    },
    [onChanged],
  );

  const container = useCallback(
    (name: string, action: ContainerAction) =>
      run(name, action, async () => {
        const r: ContainerActionResult = await containersApi.action(agentId, name, action);
        const warned = warningText(r.warnings);
        return { kind: warned ? 'warning' : 'success', text: `${VERB[action]} ${name}${r.state ? ` (now ${r.state})` : ''}.${warned}` };
      }),
    [agentId, run],
  );

  const stack = useCallback(
    (project: string, action: ContainerAction) =>
      run(`stack:${project}`, action, async () => {
        const r: StackActionResult = await containersApi.stackAction(agentId, project, action);
        const n = r.results.length;
        const base = `${VERB[action]} stack ${project}: ${n} container${n === 1 ? '' : 's'}`;
        const warned = r.results.map((x) => warningText(x.warnings)).join('');
        if (r.errors.length === 0) return { kind: warned ? 'warning' : 'success', text: `${base}.${warned}` };
        const failed = r.errors.map((e) => `${e.container}: ${e.message}`).join('; ');
        return { kind: 'warning', text: `${base}; failed: ${failed}.${warned}` };
      }),
    [agentId, run],
  );

  // Stop and restart interrupt whatever the container serves: they ask first (start does not).
  // The node it was asked on: a dialog left open while the page moves to another node acts on
  // nothing.
  const [pending, setPending] = useState<{ agentId: string; target: string; stack: boolean; action: ContainerAction } | null>(null);
  const current = pending && pending.agentId === agentId ? pending : null;
  const request = useCallback(
    (target: string, action: ContainerAction, isStack = false) => {
      if (action === 'start') {
        void (isStack ? stack(target, action) : container(target, action));
      } else {
        setPending({ agentId, target, stack: isStack, action });
      }
    },
    [agentId, container, stack],
  );
  const confirmDialog: ReactNode = current && (
    <ConfirmDialog
      // One dialog per request: an action still running never closes a later one.
      key={`${current.agentId}:${current.stack}:${current.target}:${current.action}`}
      title={`${LABEL[current.action]} ${current.stack ? 'stack' : 'container'}`}
      open
      onClose={() => setPending(null)}
      confirmLabel={`${LABEL[current.action]} ${current.target}`}
      message={`${LABEL[current.action]} ${current.stack ? `every container of stack ${current.target}` : current.target}? What ${
        current.stack ? 'they serve' : 'it serves'
      } is unavailable until ${current.action === 'stop' ? 'started again' : 'the restart is done'}.`}
      onConfirm={async () => {
        const { target, stack: isStack, action } = current;
        // The row shows the action's progress and outcome; the dialog closes at once.
        void (isStack ? stack(target, action) : container(target, action));
      }}
    />
  );

  return { busy, outcome, setOutcome, container, stack, request, confirmDialog };
}

export function ActionOutcomeBanner({ outcome, onDismiss }: { outcome: ActionOutcome | null; onDismiss: () => void }) {
  if (!outcome) return null;
  return (
    <div
      className={`alert alert-${outcome.kind} alert-dismissible`}
      role={outcome.kind === 'error' ? 'alert' : 'status'}
      data-testid="action-result"
      data-kind={outcome.kind}
    >
      <span>{outcome.text}</span>
      <button type="button" className="btn btn-ghost btn-small" aria-label="Dismiss" onClick={onDismiss}>
        ×
      </button>
    </div>
  );
}

/** Start / Stop / Restart (operators) and Delete (admins) for one container. */
export function ContainerActionButtons({
  name,
  state,
  busy,
  canOperate,
  canDelete,
  onAction,
  onDelete,
}: {
  name: string;
  state: string;
  busy: ContainerAction | 'delete' | undefined;
  canOperate: boolean;
  canDelete: boolean;
  onAction: (action: ContainerAction) => void;
  onDelete: () => void;
}) {
  if (!canOperate && !canDelete) return null;
  const disabled = (a: ContainerAction) =>
    busy !== undefined || (a === 'start' && state === 'running') || (a === 'stop' && !isUp(state));
  return (
    <div className="row-actions" aria-busy={busy !== undefined || undefined}>
      {canOperate &&
        CONTAINER_ACTIONS.map((a) => (
          <button
            key={a}
            type="button"
            className="btn btn-small"
            data-testid={`action-${a}-${name}`}
            disabled={disabled(a)}
            onClick={() => onAction(a)}
            aria-label={`${LABEL[a]} ${name}`}
          >
            {busy === a ? `${LABEL[a]}…` : LABEL[a]}
          </button>
        ))}
      {canDelete && (
        <button
          type="button"
          className="btn btn-small btn-danger"
          data-testid={`action-delete-${name}`}
          disabled={busy !== undefined}
          onClick={onDelete}
          aria-label={`Delete ${name}`}
        >
          Delete
        </button>
      )}
    </div>
  );
}

/** Stack-wide Start / Stop / Restart for a compose project. */
export function StackActionButtons({
  project,
  busy,
  onAction,
}: {
  project: string;
  busy: ContainerAction | 'delete' | undefined;
  onAction: (action: ContainerAction) => void;
}) {
  return (
    <div className="row-actions">
      {CONTAINER_ACTIONS.map((a) => (
        <button
          key={a}
          type="button"
          className="btn btn-small"
          data-testid={`stack-action-${a}-${project}`}
          disabled={busy !== undefined}
          onClick={() => onAction(a)}
          aria-label={`${LABEL[a]} every container of stack ${project}`}
        >
          {busy === a ? `${LABEL[a]}…` : `${LABEL[a]} stack`}
        </button>
      ))}
    </div>
  );
}

/** Delete a container after its name is typed again (the server checks `confirm_name` too). */
export function DeleteContainerDialog({
  agentId,
  name,
  onClose,
  onDeleted,
}: {
  agentId: string;
  /** The container to delete; null keeps the dialog closed. */
  name: string | null;
  onClose: () => void;
  onDeleted: (name: string, result: ContainerActionResult) => void;
}) {
  return (
    <Dialog title="Delete container" open={name !== null} onClose={onClose} testId="delete-container-dialog">
      {name !== null && <DeleteForm agentId={agentId} name={name} onClose={onClose} onDeleted={onDeleted} />}
    </Dialog>
  );
}

function DeleteForm({
  agentId,
  name,
  onClose,
  onDeleted,
}: {
  agentId: string;
  name: string;
  onClose: () => void;
  onDeleted: (name: string, result: ContainerActionResult) => void;
}) {
  const [typed, setTyped] = useState('');
  const [force, setForce] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const matches = typed === name;

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!matches) return;
    setBusy(true);
    setError(null);
    try {
      const r = await containersApi.remove(agentId, name, { confirm_name: typed, force });
      onDeleted(name, r);
      onClose();
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit}>
      <p>
        This removes the container <strong>{name}</strong> from the node. Its anonymous data is lost; named volumes
        stay.
      </p>
      <FormError error={error} />
      <div className={`field${error?.field === 'confirm_name' ? ' field-invalid' : ''}`}>
        <label htmlFor="confirm-name">
          Type <code>{name}</code> to confirm
        </label>
        <input
          id="confirm-name"
          name="confirm_name"
          data-testid="confirm-name-input"
          value={typed}
          onChange={(e) => setTyped(e.target.value)}
          autoComplete="off"
          spellCheck={false}
          autoFocus
        />
      </div>
      <CheckboxField label="Force: remove it even if it is running" name="force" checked={force} onChange={setForce} error={error} />
      <div className="actions">
        <button type="button" className="btn" onClick={onClose} disabled={busy}>
          Cancel
        </button>
        <button type="submit" className="btn btn-danger" data-testid="confirm-delete" disabled={!matches || busy}>
          {busy ? 'Deleting…' : 'Delete container'}
        </button>
      </div>
    </form>
  );
}
