import { useRef, useState, type FormEvent } from 'react';
import { Link } from 'react-router-dom';
import { ApiError, toApiError } from '../api/client';
import { nodesApi, type Agent, type CreatedEnrollment, type EnrollmentToken } from '../api/containers';
import { useUser } from '../auth';
import { Badge, ConfirmDialog, FormError, LabelChips, PageHeader, TextField, copyText, useLoad, usePoll } from '../components/ui';
import { formatAgo, formatMiB, formatPercent, formatTime } from '../format';
import { atLeast } from '../roles';

const REFRESH_MS = 5000;

export function AgentStatusBadge({ agent }: { agent: Pick<Agent, 'status' | 'revoked'> }) {
  if (agent.revoked) return <Badge kind="bad">revoked</Badge>;
  return <Badge kind={agent.status === 'online' ? 'ok' : 'bad'}>{agent.status}</Badge>;
}

export function NodesPage() {
  const me = useUser();
  const isAdmin = atLeast(me.role, 'admin');
  const agents = usePoll(() => nodesApi.agents(), REFRESH_MS);
  const [revoking, setRevoking] = useState<Agent | null>(null);

  return (
    <>
      <PageHeader title="Nodes" />
      <p className="muted">
        Docker hosts managed by InfraPilot through their agent. The list refreshes every {REFRESH_MS / 1000} seconds.
      </p>
      <FormError error={agents.error} />
      <div className="table-wrap">
        <table data-testid="nodes-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col">Last seen</th>
              <th scope="col">Load</th>
              <th scope="col">Version</th>
              <th scope="col">Labels</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {agents.data?.map((a) => (
              <tr key={a.id} data-testid={`node-row-${a.name}`} data-status={a.revoked ? 'revoked' : a.status}>
                <td>
                  <Link to={`/nodes/${encodeURIComponent(a.id)}`}>{a.name}</Link>{' '}
                  {a.builtin && (
                    <span data-testid="builtin-marker" title="The agent inside the InfraPilot host process">
                      <Badge>built-in</Badge>
                    </span>
                  )}
                </td>
                <td>
                  <AgentStatusBadge agent={a} />
                </td>
                <td title={a.last_seen_at ?? undefined}>{formatAgo(a.last_seen_at)}</td>
                <td data-testid={`node-load-${a.name}`}>
                  {a.host_stats ? (
                    <span title={`reported ${formatTime(a.host_stats.reported_at)}`}>
                      CPU {formatPercent(a.host_stats.cpu_percent)} · memory {formatMiB(a.host_stats.memory_used_bytes)} of{' '}
                      {formatMiB(a.host_stats.memory_total_bytes)} · {a.host_stats.containers_running}/{a.host_stats.containers_total} running
                    </span>
                  ) : (
                    <span className="muted">—</span>
                  )}
                </td>
                <td>{a.version || '—'}</td>
                <td className="wrap">
                  <LabelChips labels={a.labels} />
                </td>
                <td className="actions-cell">
                  <div className="row-actions">
                    {isAdmin && !a.revoked && !a.builtin && (
                      <button
                        type="button"
                        className="btn btn-small btn-danger"
                        data-testid={`revoke-node-${a.name}`}
                        onClick={() => setRevoking(a)}
                        aria-label={`Revoke node ${a.name}`}
                      >
                        Revoke
                      </button>
                    )}
                  </div>
                </td>
              </tr>
            ))}
            {agents.data?.length === 0 && (
              <tr>
                <td colSpan={7} className="muted">
                  No nodes yet.{isAdmin ? ' Create an enrollment token below and run its install command on a Docker host.' : ''}
                </td>
              </tr>
            )}
            {!agents.data && agents.loading && (
              <tr>
                <td colSpan={7} className="muted">
                  Loading…
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>

      {isAdmin && <EnrollmentTokens />}

      <ConfirmDialog
        title="Revoke node"
        open={revoking !== null}
        onClose={() => setRevoking(null)}
        confirmLabel="Revoke node"
        message={
          <>
            Revoke <strong>{revoking?.name}</strong>? Its certificate stops working at once and the node disappears from
            management until it is enrolled again.
          </>
        }
        onConfirm={async () => {
          if (!revoking) return;
          await nodesApi.revokeAgent(revoking.id);
          await agents.reload();
        }}
      />
    </>
  );
}

// ---- enrollment tokens ----------------------------------------------------------

function tokenStateKind(state: string): 'ok' | 'warn' | 'bad' | 'neutral' {
  if (state === 'active') return 'ok';
  if (state === 'revoked') return 'bad';
  if (state === 'expired' || state === 'used_up') return 'warn';
  return 'neutral';
}

function EnrollmentTokens() {
  const tokens = useLoad(() => nodesApi.enrollmentTokens());
  const [created, setCreated] = useState<CreatedEnrollment | null>(null);
  const [revoking, setRevoking] = useState<EnrollmentToken | null>(null);

  return (
    <section className="section" aria-labelledby="enrollment-heading">
      <h2 id="enrollment-heading">Enrollment tokens</h2>
      <p className="muted">
        A node joins with an enrollment token: run the install command on the Docker host. Agents enrolled with a token get its
        labels.
      </p>

      {created && <CreatedTokenBox created={created} onDone={() => setCreated(null)} />}

      <CreateEnrollmentForm
        onCreated={(t) => {
          setCreated(t);
          void tokens.reload();
        }}
      />

      <FormError error={tokens.error} />
      <div className="table-wrap">
        <table data-testid="enrollment-tokens-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Labels</th>
              <th scope="col">Uses</th>
              <th scope="col">Expires</th>
              <th scope="col">State</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {tokens.data?.map((t) => (
              <tr key={t.id} data-testid={`enrollment-token-row-${t.name}`} data-state={t.state}>
                <td>{t.name}</td>
                <td className="wrap">
                  <LabelChips labels={t.labels} />
                </td>
                <td className="num">
                  {t.uses}/{t.max_uses}
                </td>
                <td title={t.expires_at}>{formatTime(t.expires_at)}</td>
                <td>
                  <Badge kind={tokenStateKind(t.state)}>{t.state.replace('_', ' ')}</Badge>
                </td>
                <td className="actions-cell">
                  <div className="row-actions">
                    {t.state === 'active' && (
                      <button
                        type="button"
                        className="btn btn-small btn-danger"
                        data-testid={`revoke-enrollment-token-${t.name}`}
                        onClick={() => setRevoking(t)}
                        aria-label={`Revoke enrollment token ${t.name}`}
                      >
                        Revoke
                      </button>
                    )}
                  </div>
                </td>
              </tr>
            ))}
            {tokens.data?.length === 0 && (
              <tr>
                <td colSpan={6} className="muted">
                  No enrollment tokens yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>

      <ConfirmDialog
        title="Revoke enrollment token"
        open={revoking !== null}
        onClose={() => setRevoking(null)}
        confirmLabel="Revoke token"
        message={
          <>
            Revoke <strong>{revoking?.name}</strong>? Nodes can no longer enrol with it; nodes already enrolled stay.
          </>
        }
        onConfirm={async () => {
          if (!revoking) return;
          await nodesApi.revokeEnrollmentToken(revoking.id);
          await tokens.reload();
        }}
      />
    </section>
  );
}

/** `env=prod, role=web` → `{env: "prod", role: "web"}`; throws an ApiError on `labels` otherwise. */
export function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const part of text.split(',')) {
    const item = part.trim();
    if (!item) continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ApiError(0, 'invalid_value', `Label “${item}” is not of the form key=value.`, 'labels');
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    if (!key) throw new ApiError(0, 'invalid_value', `Label “${item}” has no key.`, 'labels');
    labels[key] = value;
  }
  return labels;
}

function CreateEnrollmentForm({ onCreated }: { onCreated: (t: CreatedEnrollment) => void }) {
  const [name, setName] = useState('');
  const [labels, setLabels] = useState('');
  const [maxUses, setMaxUses] = useState('1');
  const [hours, setHours] = useState('24');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    let parsed: Record<string, string>;
    try {
      parsed = parseLabels(labels);
    } catch (err) {
      setError(toApiError(err));
      return;
    }
    setBusy(true);
    try {
      const t = await nodesApi.createEnrollmentToken({
        name: name.trim(),
        labels: parsed,
        max_uses: Number(maxUses),
        expires_in_hours: Number(hours),
      });
      setName('');
      setLabels('');
      onCreated(t);
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  // Server-side label errors name fields like `labels.env`; highlight the labels input for them.
  const fieldError = error?.field?.startsWith('labels.') ? new ApiError(error.status, error.code, error.message, 'labels') : error;

  return (
    <form className="card token-form" onSubmit={submit} data-testid="token-create-form" aria-label="New enrollment token">
      <h3>New enrollment token</h3>
      <FormError error={error} />
      <div className="form-grid">
        <TextField
          label="Name"
          name="name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          required
          placeholder="web servers rollout"
          error={fieldError}
          data-testid="token-name"
        />
        <TextField
          label="Labels"
          name="labels"
          value={labels}
          onChange={(e) => setLabels(e.target.value)}
          placeholder="env=prod, role=web"
          hint="key=value pairs, separated by commas"
          error={fieldError}
          data-testid="token-labels"
        />
        <TextField
          label="Max uses"
          name="max_uses"
          type="number"
          min={1}
          max={1000}
          step={1}
          value={maxUses}
          onChange={(e) => setMaxUses(e.target.value)}
          required
          error={fieldError}
          data-testid="token-max-uses"
        />
        <TextField
          label="Expires in (hours)"
          name="expires_in_hours"
          type="number"
          min={1}
          max={720}
          step={1}
          value={hours}
          onChange={(e) => setHours(e.target.value)}
          required
          error={fieldError}
          data-testid="token-expiry-hours"
        />
      </div>
      <div className="actions actions-left">
        <button type="submit" className="btn btn-primary" disabled={busy} data-testid="token-create-submit">
          {busy ? 'Creating…' : 'Create token'}
        </button>
      </div>
    </form>
  );
}

export function CreatedTokenBox({ created, onDone }: { created: CreatedEnrollment; onDone?: () => void }) {
  const boxRef = useRef<HTMLTextAreaElement>(null);
  const [copied, setCopied] = useState<'yes' | 'selected' | null>(null);
  // Until the server sends `install_command`, fall back to the enroll command of the agent.
  const command = created.install_command || `infrapilot-agent enroll --token ${created.secret}`;

  async function copy() {
    const ok = await copyText(command, boxRef.current);
    setCopied(ok ? 'yes' : 'selected');
    window.setTimeout(() => setCopied(null), 2500);
  }

  return (
    <div className="alert alert-success secret-box" role="status" data-testid="enrollment-created">
      <p>
        Enrollment token <strong>{created.name}</strong> created. The secret is shown this once.
      </p>
      <div className="secret-line">
        <span className="muted">Secret:</span> <code data-testid="enrollment-secret">{created.secret}</code>
      </div>
      {created.install_warning && (
        <p className="alert alert-error" role="alert" data-testid="install-warning">
          <strong>Insecure:</strong> {created.install_warning}
        </p>
      )}
      <label htmlFor="install-command" className="block-label">
        Run this on the Docker host:
      </label>
      <textarea
        id="install-command"
        ref={boxRef}
        className="command-box"
        data-testid="install-command"
        readOnly
        rows={3}
        value={command}
        onFocus={(e) => e.currentTarget.select()}
        spellCheck={false}
      />
      <div className="actions actions-left">
        <button type="button" className="btn btn-small" onClick={() => void copy()} data-testid="copy-install-command">
          {copied === 'yes' ? 'Copied' : copied === 'selected' ? 'Selected — press Ctrl+C' : 'Copy'}
        </button>
        {onDone && (
          <button type="button" className="btn btn-small" onClick={onDone}>
            I have copied it
          </button>
        )}
      </div>
    </div>
  );
}
