import { useState } from 'react';
import { ApiError, toApiError } from '../api/client';
import { alertsApi, type Rule, type RuleKind } from '../api/alerts';
import { useUser } from '../auth';
import { Badge, CheckboxField, ConfirmDialog, Dialog, FormError, PageHeader, SelectField, TextField, useLoad } from '../components/ui';
import { atLeast } from '../roles';

interface KindDef {
  id: RuleKind;
  label: string;
  params: { name: string; label: string; placeholder?: string }[];
}

const CRASHED: KindDef = { id: 'container_crashed', label: 'Container crashed (non-zero exit)', params: [{ name: 'container', label: 'Only container (name)' }] };

const KINDS: KindDef[] = [
  CRASHED,
  {
    id: 'restart_loop',
    label: 'Restart loop',
    params: [
      { name: 'restarts', label: 'Starts', placeholder: '3' },
      { name: 'window_seconds', label: 'Within seconds', placeholder: '300' },
      { name: 'container', label: 'Only container (name)' },
    ],
  },
  {
    id: 'cpu_high',
    label: 'CPU over threshold',
    params: [
      { name: 'threshold_percent', label: 'Threshold % (of one core)' },
      { name: 'duration_seconds', label: 'For seconds', placeholder: '60' },
      { name: 'container', label: 'Only container (name)' },
    ],
  },
  {
    id: 'memory_high',
    label: 'Memory over threshold',
    params: [
      { name: 'threshold_percent', label: 'Threshold % of its limit' },
      { name: 'duration_seconds', label: 'For seconds', placeholder: '60' },
      { name: 'container', label: 'Only container (name)' },
    ],
  },
  { id: 'node_offline', label: 'Node offline', params: [] },
  { id: 'certificate_expiring', label: 'Certificate expiring', params: [{ name: 'days', label: 'Days before expiry', placeholder: '14' }] },
  {
    id: 'log_error_spike',
    label: 'Error spike in logs',
    params: [
      { name: 'min_errors', label: 'At least errors a minute', placeholder: '10' },
      { name: 'factor', label: 'Times the baseline', placeholder: '3' },
      { name: 'baseline_minutes', label: 'Baseline minutes', placeholder: '30' },
      { name: 'container', label: 'Only container (name)' },
    ],
  },
  {
    id: 'proxy_error_rate',
    label: 'Proxy host 5xx rate',
    params: [
      { name: 'threshold_percent', label: '5xx share over %', placeholder: '5' },
      { name: 'window_seconds', label: 'Over seconds', placeholder: '300' },
      { name: 'min_requests', label: 'At least requests', placeholder: '20' },
      { name: 'proxy_host', label: 'Only proxy host (id)' },
    ],
  },
  {
    id: 'policy_engine_failed',
    label: 'Policy engine failed',
    params: [{ name: 'window_seconds', label: 'Over seconds', placeholder: '300' }],
  },
];

function describe(r: Rule): string {
  const p = Object.entries(r.params)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(', ');
  return p || '—';
}

export function AlertRulesPage() {
  const me = useUser();
  const admin = atLeast(me.role, 'admin');
  const rules = useLoad(() => alertsApi.rules());
  const channels = useLoad(() => alertsApi.channels());
  const [creating, setCreating] = useState(false);
  const [removing, setRemoving] = useState<Rule | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const channelName = (id: string) => channels.data?.find((c) => c.id === id)?.name ?? id;
  return (
    <>
      <PageHeader title="Alert rules">
        {admin && (
          <button type="button" className="btn btn-primary" onClick={() => setCreating(true)}>
            New rule
          </button>
        )}
      </PageHeader>
      <FormError error={error ?? rules.error} />
      <div className="table-wrap">
        <table data-testid="rules-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Condition</th>
              <th scope="col">Parameters</th>
              <th scope="col">Severity</th>
              <th scope="col">Cooldown</th>
              <th scope="col">Channels</th>
              <th scope="col">Status</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rules.data?.map((r) => (
              <tr key={r.id}>
                <td>{r.name}</td>
                <td>{KINDS.find((k) => k.id === r.kind)?.label ?? r.kind}</td>
                <td className="small">{describe(r)}</td>
                <td>
                  <Badge kind={r.severity === 'critical' ? 'bad' : r.severity === 'warning' ? 'warn' : 'neutral'}>{r.severity}</Badge>
                </td>
                <td>{r.cooldown_seconds} s</td>
                <td>{r.channel_ids.map(channelName).join(', ')}</td>
                <td>{r.enabled ? <Badge kind="ok">On</Badge> : <Badge>Off</Badge>}</td>
                <td className="actions-cell">
                  {admin && (
                    <div className="row-actions">
                      <button
                        type="button"
                        className="btn btn-small"
                        onClick={async () => {
                          try {
                            await alertsApi.setRuleEnabled(r.id, !r.enabled);
                            await rules.reload();
                          } catch (e) {
                            setError(toApiError(e));
                          }
                        }}
                      >
                        {r.enabled ? 'Turn off' : 'Turn on'}
                      </button>
                      <button type="button" className="btn btn-small btn-danger" onClick={() => setRemoving(r)} aria-label={`Delete rule ${r.name}`}>
                        Delete
                      </button>
                    </div>
                  )}
                </td>
              </tr>
            ))}
            {rules.data?.length === 0 && (
              <tr>
                <td colSpan={8} className="muted">
                  No rules yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Dialog title="New alert rule" open={creating} onClose={() => setCreating(false)} testId="rule-dialog">
        <RuleForm
          channels={(channels.data ?? []).map((c) => ({ id: c.id, name: c.name }))}
          onCancel={() => setCreating(false)}
          onDone={async () => {
            setCreating(false);
            await rules.reload();
          }}
        />
      </Dialog>
      <ConfirmDialog
        title="Delete rule"
        open={removing !== null}
        onClose={() => setRemoving(null)}
        confirmLabel="Delete rule"
        message={
          <>
            Delete <strong>{removing?.name}</strong> and its history?
          </>
        }
        onConfirm={async () => {
          if (!removing) return;
          await alertsApi.deleteRule(removing.id);
          await rules.reload();
        }}
      />
    </>
  );
}

function RuleForm({ channels, onDone, onCancel }: { channels: { id: string; name: string }[]; onDone: () => Promise<void>; onCancel: () => void }) {
  const [name, setName] = useState('');
  const [kind, setKind] = useState<RuleKind>(CRASHED.id);
  const [params, setParams] = useState<Record<string, string>>({});
  const [severity, setSeverity] = useState('warning');
  const [cooldown, setCooldown] = useState('300');
  const [picked, setPicked] = useState<string[]>([]);
  const [error, setError] = useState<ApiError | null>(null);
  const def = KINDS.find((k) => k.id === kind) ?? CRASHED;
  return (
    <form
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        const body: Record<string, unknown> = {};
        for (const p of def.params) {
          const v = (params[p.name] ?? '').trim();
          if (v) body[p.name] = p.name === 'container' || p.name === 'proxy_host' ? v : Number(v);
        }
        try {
          await alertsApi.createRule({ name: name.trim(), kind, params: body, severity, cooldown_seconds: Number(cooldown), channel_ids: picked });
          await onDone();
        } catch (err) {
          setError(toApiError(err));
        }
      }}
    >
      <FormError error={error} />
      <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required error={error} />
      <SelectField
        label="When"
        name="kind"
        value={kind}
        onChange={(e) => {
          setKind(e.target.value as RuleKind);
          setParams({});
        }}
        error={error}
      >
        {KINDS.map((k) => (
          <option key={k.id} value={k.id}>
            {k.label}
          </option>
        ))}
      </SelectField>
      {def.params.map((p) => (
        <TextField
          key={p.name}
          label={p.label}
          name={`params.${p.name}`}
          value={params[p.name] ?? ''}
          placeholder={p.placeholder}
          onChange={(e) => setParams({ ...params, [p.name]: e.target.value })}
          error={error}
        />
      ))}
      <SelectField label="Severity" name="severity" value={severity} onChange={(e) => setSeverity(e.target.value)} error={error}>
        <option value="info">Info</option>
        <option value="warning">Warning</option>
        <option value="critical">Critical</option>
      </SelectField>
      <TextField label="Cooldown (seconds between notifications per target)" name="cooldown_seconds" type="number" min={0} value={cooldown} onChange={(e) => setCooldown(e.target.value)} error={error} />
      <fieldset className={error?.field?.startsWith('channel_ids') ? 'field-invalid' : undefined}>
        <legend>Notify</legend>
        {channels.length === 0 && <p className="muted">Create a channel first.</p>}
        {channels.map((c) => (
          <CheckboxField
            key={c.id}
            label={c.name}
            name={`channel-${c.id}`}
            checked={picked.includes(c.id)}
            onChange={(v) => setPicked(v ? [...picked, c.id] : picked.filter((x) => x !== c.id))}
          />
        ))}
      </fieldset>
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary">
          Create rule
        </button>
      </div>
    </form>
  );
}
