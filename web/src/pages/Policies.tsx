// Policies: the list (/policies), the editor (/policies/new, /policies/:id) with a dry run
// against what runs now, and the violations (/policies/violations). The conditions form is
// built from the policy type's JSON Schema, as the engine plugin declares it.

import { useEffect, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router-dom';
import { ApiError, toApiError } from '../api/client';
import { policiesApi, type DryRun, type Policy, type PolicyAction, type PolicyType, type Violation } from '../api/policies';
import { useUser } from '../auth';
import { formFromSettings, SchemaForm, settingsFromForm } from '../components/SchemaForm';
import { Badge, CheckboxField, ConfirmDialog, FormError, LabelChips, PageHeader, SelectField, TextField, useLoad } from '../components/ui';
import { atLeast } from '../roles';

const ACTION_BADGE: Record<string, 'bad' | 'warn' | 'neutral'> = { block: 'bad', warn: 'warn', audit: 'neutral' };

function ActionBadge({ action }: { action: string }) {
  return <Badge kind={ACTION_BADGE[action] ?? 'neutral'}>{action}</Badge>;
}

export function PoliciesPage() {
  const me = useUser();
  const admin = atLeast(me.role, 'admin');
  const policies = useLoad(() => policiesApi.list());
  const types = useLoad(() => policiesApi.types());
  const [removing, setRemoving] = useState<Policy | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const title = (id: string) => types.data?.find((t) => t.id === id)?.title ?? id;
  return (
    <>
      <PageHeader title="Policies">
        <Link className="btn" to="/policies/violations">
          Violations
        </Link>
        {admin && (
          <Link className="btn btn-primary" to="/policies/new">
            New policy
          </Link>
        )}
      </PageHeader>
      <FormError error={error ?? policies.error} />
      <div className="table-wrap">
        <table data-testid="policies-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col">Action</th>
              <th scope="col">Nodes</th>
              <th scope="col">Status</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {policies.data?.map((p) => (
              <tr key={p.id}>
                <td>
                  <Link to={`/policies/${p.id}`}>{p.name}</Link>
                </td>
                <td>{title(p.policy_type)}</td>
                <td>
                  <ActionBadge action={p.action} />
                </td>
                <td>{Object.keys(p.node_labels).length === 0 ? <span className="muted">all</span> : <LabelChips labels={p.node_labels} />}</td>
                <td>{p.enabled ? <Badge kind="ok">On</Badge> : <Badge>Off</Badge>}</td>
                <td className="actions-cell">
                  {admin && (
                    <div className="row-actions">
                      <button
                        type="button"
                        className="btn btn-small"
                        onClick={async () => {
                          try {
                            const { id, created_by: _c, created_at: _a, updated_at: _u, ...body } = p;
                            await policiesApi.update(id, { ...body, enabled: !p.enabled });
                            await policies.reload();
                          } catch (e) {
                            setError(toApiError(e));
                          }
                        }}
                      >
                        {p.enabled ? 'Turn off' : 'Turn on'}
                      </button>
                      <button type="button" className="btn btn-small btn-danger" onClick={() => setRemoving(p)} aria-label={`Delete policy ${p.name}`}>
                        Delete
                      </button>
                    </div>
                  )}
                </td>
              </tr>
            ))}
            {policies.data?.length === 0 && (
              <tr>
                <td colSpan={6} className="muted">
                  No policies yet.{types.data?.length === 0 ? ' No policy engine is enabled: enable the policy plugins (enterprise feature “policies”).' : ''}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <ConfirmDialog
        title="Delete policy"
        open={removing !== null}
        onClose={() => setRemoving(null)}
        confirmLabel="Delete policy"
        message={
          <>
            Delete <strong>{removing?.name}</strong>? Its violations stay on record.
          </>
        }
        onConfirm={async () => {
          if (!removing) return;
          await policiesApi.remove(removing.id);
          await policies.reload();
        }}
      />
    </>
  );
}

function labelsFromText(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

export function PolicyEditPage() {
  const { id } = useParams();
  const editing = id !== undefined && id !== 'new';
  const navigate = useNavigate();
  const me = useUser();
  const admin = atLeast(me.role, 'admin');
  const types = useLoad(() => policiesApi.types());
  const [loaded, setLoaded] = useState<Policy | null>(null);
  const [name, setName] = useState('');
  const [policyType, setPolicyType] = useState('');
  const [action, setAction] = useState<PolicyAction>('warn');
  const [enabled, setEnabled] = useState(true);
  const [labels, setLabels] = useState('');
  const [values, setValues] = useState<Record<string, string>>({});
  const [error, setError] = useState<ApiError | null>(null);
  const [dry, setDry] = useState<DryRun | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!editing || !id) return;
    policiesApi
      .get(id)
      .then((p) => {
        setLoaded(p);
        setName(p.name);
        setPolicyType(p.policy_type);
        setAction(p.action as PolicyAction);
        setEnabled(p.enabled);
        setLabels(Object.entries(p.node_labels).map(([k, v]) => `${k}=${v}`).join('\n'));
      })
      .catch((e) => setError(toApiError(e)));
  }, [editing, id]);

  const type: PolicyType | undefined = types.data?.find((t) => t.id === policyType) ?? (editing ? undefined : types.data?.[0]);
  useEffect(() => {
    if (!type) return;
    if (!editing && !policyType) setPolicyType(type.id);
    setValues(formFromSettings(type.conditions_schema, loaded && loaded.policy_type === type.id ? loaded.conditions : {}));
  }, [type?.id, loaded]); // eslint-disable-line react-hooks/exhaustive-deps

  const body = () => ({
    name: name.trim(),
    policy_type: type?.id ?? policyType,
    action,
    enabled,
    node_labels: labelsFromText(labels),
    conditions: type ? settingsFromForm(type.conditions_schema, values) : {},
  });

  return (
    <>
      <PageHeader title={editing ? `Policy ${loaded?.name ?? ''}` : 'New policy'}>
        <Link className="btn" to="/policies">
          All policies
        </Link>
      </PageHeader>
      <form
        className="form-page"
        data-testid="policy-form"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          setBusy(true);
          try {
            if (editing && id) await policiesApi.update(id, body());
            else await policiesApi.create(body());
            navigate('/policies');
          } catch (err) {
            setError(toApiError(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <FormError error={error ?? types.error} />
        <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required error={error} disabled={!admin} />
        <SelectField label="Type" name="policy_type" value={type?.id ?? ''} onChange={(e) => setPolicyType(e.target.value)} error={error} disabled={!admin || editing}>
          {types.data?.map((t) => (
            <option key={t.id} value={t.id}>
              {t.title}
            </option>
          ))}
        </SelectField>
        {type && <p className="hint">{type.description}</p>}
        <SelectField label="When it finds something" name="action" value={action} onChange={(e) => setAction(e.target.value as PolicyAction)} error={error} disabled={!admin}>
          <option value="block">Block the action</option>
          <option value="warn">Warn (the action goes ahead)</option>
          <option value="audit">Audit (record only)</option>
        </SelectField>
        <CheckboxField label="Enabled" name="enabled" checked={enabled} onChange={setEnabled} error={error} />
        <div className={`field${error?.field?.startsWith('node_labels') ? ' field-invalid' : ''}`}>
          <label htmlFor="node-labels">Only nodes labelled</label>
          <textarea id="node-labels" name="node_labels" rows={2} value={labels} onChange={(e) => setLabels(e.target.value)} disabled={!admin} />
          <small className="hint">One key=value per line; empty: every node.</small>
        </div>
        {type && <SchemaForm schema={type.conditions_schema} values={values} onChange={setValues} error={error} prefix="conditions" legend="Conditions" />}
        {admin && (
          <div className="form-actions">
            <button type="submit" className="btn btn-primary" disabled={busy}>
              {editing ? 'Save policy' : 'Create policy'}
            </button>
            <button
              type="button"
              className="btn"
              disabled={busy}
              onClick={async () => {
                setError(null);
                setDry(null);
                setBusy(true);
                try {
                  setDry(await policiesApi.dryRun(body()));
                } catch (err) {
                  setError(toApiError(err));
                } finally {
                  setBusy(false);
                }
              }}
            >
              Dry run against what runs now
            </button>
          </div>
        )}
      </form>
      {dry && (
        <section data-testid="dry-run">
          <h2>Dry run</h2>
          <p>
            {dry.containers} running container{dry.containers === 1 ? '' : 's'} on {dry.nodes} node{dry.nodes === 1 ? '' : 's'}:{' '}
            {dry.findings.length === 0 ? 'none breaks this policy.' : `${dry.findings.length} would be found.`}
            {dry.skipped > 0 ? ` ${dry.skipped} not checked (over the limit of one pass).` : ''}
          </p>
          {dry.findings.length > 0 && (
            <div className="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Node</th>
                    <th scope="col">Container</th>
                    <th scope="col">Why</th>
                  </tr>
                </thead>
                <tbody>
                  {dry.findings.map((f) => (
                    <tr key={`${f.agent_id}/${f.container}`}>
                      <td>{f.node}</td>
                      <td>{f.container}</td>
                      <td>{f.reasons.join('; ')}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          {dry.errors.map((e) => (
            <p key={`${e.agent_id}:${e.message}`} className="muted">
              {e.node}: {e.message}
            </p>
          ))}
        </section>
      )}
    </>
  );
}

export function ViolationsPage() {
  const [decision, setDecision] = useState('');
  const [action, setAction] = useState('');
  const [items, setItems] = useState<Violation[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const load = async (more: boolean) => {
    setError(null);
    try {
      const page = await policiesApi.violations({ decision, action, cursor: more ? (cursor ?? undefined) : undefined, limit: 50 });
      setItems(more ? [...items, ...page.items] : page.items);
      setCursor(page.next_cursor ?? null);
    } catch (e) {
      setError(toApiError(e));
    }
  };
  useEffect(() => {
    void load(false);
  }, [decision, action]); // eslint-disable-line react-hooks/exhaustive-deps
  return (
    <>
      <PageHeader title="Policy violations">
        <Link className="btn" to="/policies">
          Policies
        </Link>
      </PageHeader>
      <div className="filters">
        <SelectField label="Decision" name="decision" value={decision} onChange={(e) => setDecision(e.target.value)} error={error}>
          <option value="">Any</option>
          <option value="block">Blocked</option>
          <option value="warn">Warned</option>
          <option value="audit">Audited</option>
        </SelectField>
        <TextField label="Action" name="action" value={action} placeholder="container.restart" onChange={(e) => setAction(e.target.value)} error={error} />
      </div>
      <FormError error={error} />
      <div className="table-wrap">
        <table data-testid="violations-table">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Policy</th>
              <th scope="col">Decision</th>
              <th scope="col">Action</th>
              <th scope="col">Resource</th>
              <th scope="col">Who</th>
              <th scope="col">Why</th>
            </tr>
          </thead>
          <tbody>
            {items.map((v) => (
              <tr key={v.id}>
                <td className="small">{new Date(v.created_at).toLocaleString()}</td>
                <td>
                  <Link to={`/policies/${v.policy_id}`}>{v.policy_name}</Link>
                </td>
                <td>
                  <ActionBadge action={v.decision} />
                </td>
                <td>{v.action}</td>
                <td className="small">{v.resource}</td>
                <td>{v.actor}</td>
                <td>
                  {v.reasons.join('; ')}
                  {v.engine_error && <div className="small muted">engine: {v.engine_error}</div>}
                </td>
              </tr>
            ))}
            {items.length === 0 && (
              <tr>
                <td colSpan={7} className="muted">
                  No violations.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      {cursor && (
        <button type="button" className="btn" onClick={() => void load(true)}>
          Older
        </button>
      )}
    </>
  );
}
