import { useState, type FormEvent } from 'react';
import { ApiError, api, toApiError } from '../api/client';
import type { ApiTokenDto, CreatedToken } from '../api/types';
import { useUser } from '../auth';
import { Badge, ConfirmDialog, CopyButton, Dialog, FormError, PageHeader, SelectField, TextField, useLoad } from '../components/ui';
import { formatTime } from '../format';
import { atLeast, roleLabel } from '../roles';

function tokenState(t: ApiTokenDto): { label: string; kind: 'ok' | 'bad' | 'warn' } {
  if (t.revoked) return { label: 'Revoked', kind: 'bad' };
  if (new Date(t.expires_at).getTime() <= Date.now()) return { label: 'Expired', kind: 'warn' };
  return { label: 'Active', kind: 'ok' };
}

export function TokensPage() {
  const me = useUser();
  const tokens = useLoad(() => api.tokens());
  const roles = useLoad(() => api.roles());
  const users = useLoad(() => api.users().catch(() => []));
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<CreatedToken | null>(null);
  const [revoking, setRevoking] = useState<ApiTokenDto | null>(null);

  const emailOf = (id: string) => users.data?.find((u) => u.id === id)?.email ?? id;
  // A token cannot be worth more than its creator; offer only roles up to ours.
  const grantable = (roles.data ?? []).filter((r) => atLeast(me.role, r.id));

  return (
    <>
      <PageHeader title="API tokens">
        <button type="button" className="btn btn-primary" onClick={() => setCreating(true)}>
          New token
        </button>
      </PageHeader>
      <p className="muted">
        Tokens let scripts and CI call the API: send <code>Authorization: Bearer &lt;secret&gt;</code>.
      </p>
      {created && (
        <div className="alert alert-success secret-box" role="status">
          <p>
            Token <strong>{created.name}</strong> created. Copy the secret now; it is not shown again.
          </p>
          <div className="secret-line">
            <code data-testid="token-secret">{created.secret}</code>
            <CopyButton text={created.secret} />
          </div>
          <button type="button" className="btn btn-small" onClick={() => setCreated(null)}>
            I have copied it
          </button>
        </div>
      )}
      <FormError error={tokens.error} />
      <div className="table-wrap">
        <table data-testid="tokens-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">Status</th>
              <th scope="col">Created by</th>
              <th scope="col">Created</th>
              <th scope="col">Expires</th>
              <th scope="col">Last used</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {tokens.data?.map((t) => {
              const s = tokenState(t);
              return (
                <tr key={t.id}>
                  <td>{t.name}</td>
                  <td>{roleLabel(t.role)}</td>
                  <td>
                    <Badge kind={s.kind}>{s.label}</Badge>
                  </td>
                  <td>{emailOf(t.created_by)}</td>
                  <td title={t.created_at}>{formatTime(t.created_at)}</td>
                  <td title={t.expires_at}>{formatTime(t.expires_at)}</td>
                  <td title={t.last_used_at ?? undefined}>{t.last_used_at ? formatTime(t.last_used_at) : 'Never'}</td>
                  <td className="actions-cell">
                    <div className="row-actions">
                      {!t.revoked && (
                        <button type="button" className="btn btn-small btn-danger" onClick={() => setRevoking(t)} aria-label={`Revoke token ${t.name}`}>
                          Revoke
                        </button>
                      )}
                    </div>
                  </td>
                </tr>
              );
            })}
            {tokens.data?.length === 0 && (
              <tr>
                <td colSpan={8} className="muted">
                  No API tokens yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>

      <Dialog title="New API token" open={creating} onClose={() => setCreating(false)} testId="token-create-dialog">
        <CreateTokenForm
          roles={grantable.map((r) => r.id)}
          onCancel={() => setCreating(false)}
          onDone={(t) => {
            setCreating(false);
            setCreated(t);
            void tokens.reload();
          }}
        />
      </Dialog>
      <ConfirmDialog
        title="Revoke token"
        open={revoking !== null}
        onClose={() => setRevoking(null)}
        confirmLabel="Revoke token"
        message={
          <>
            Revoke <strong>{revoking?.name}</strong>? Anything using it stops working at once.
          </>
        }
        onConfirm={async () => {
          if (!revoking) return;
          await api.revokeToken(revoking.id);
          await tokens.reload();
        }}
      />
    </>
  );
}

function CreateTokenForm({
  roles,
  onDone,
  onCancel,
}: {
  /** Role ids (`RoleInfo.id`) the new token may get. */
  roles: string[];
  onDone: (t: CreatedToken) => void;
  onCancel: () => void;
}) {
  const [name, setName] = useState('');
  const [role, setRole] = useState('viewer');
  const [days, setDays] = useState('90');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onDone(await api.createToken({ name: name.trim(), role, expires_in_days: Number(days) }));
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit}>
      <FormError error={error} />
      <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required hint="What uses it, e.g. “ci-deploy”." error={error} />
      <SelectField label="Role" name="role" value={role} onChange={(e) => setRole(e.target.value)} error={error}>
        {roles.map((r) => (
          <option key={r} value={r}>
            {roleLabel(r)}
          </option>
        ))}
      </SelectField>
      <TextField
        label="Expires in (days)"
        name="expires_in_days"
        type="number"
        min={1}
        step={1}
        value={days}
        onChange={(e) => setDays(e.target.value)}
        required
        error={error}
      />
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Create token
        </button>
      </div>
    </form>
  );
}
