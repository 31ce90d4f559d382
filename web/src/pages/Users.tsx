import { useState, type FormEvent } from 'react';
import { ApiError, api, toApiError } from '../api/client';
import type { RoleInfo, UpdateUserRequest, UserDto } from '../api/types';
import { useAuth, useUser } from '../auth';
import {
  Badge,
  CheckboxField,
  ConfirmDialog,
  Dialog,
  FormError,
  PageHeader,
  SelectField,
  TextField,
  useLoad,
} from '../components/ui';
import { formatTime } from '../format';
import { atLeast, isRole, roleLabel } from '../roles';

type Editing =
  | { kind: 'create' }
  | { kind: 'edit'; user: UserDto }
  | { kind: 'password'; user: UserDto }
  | { kind: 'delete'; user: UserDto }
  | { kind: 'reset-mfa'; user: UserDto }
  | null;

export function UsersPage() {
  const me = useUser();
  const { reloadUser } = useAuth();
  const canManage = atLeast(me.role, 'super_admin');
  const users = useLoad(() => api.users());
  const roles = useLoad(() => api.roles());
  const [editing, setEditing] = useState<Editing>(null);
  const [flash, setFlash] = useState<string | null>(null);
  const close = () => setEditing(null);

  async function done(message: string) {
    setEditing(null);
    setFlash(message);
    await users.reload();
  }

  return (
    <>
      <PageHeader title="Users">
        {canManage && (
          <button type="button" className="btn btn-primary" onClick={() => setEditing({ kind: 'create' })}>
            New user
          </button>
        )}
      </PageHeader>
      {!canManage && <p className="muted">Only a super admin can add, change or delete users.</p>}
      {flash && (
        <div className="alert alert-success" role="status">
          {flash}
        </div>
      )}
      <FormError error={users.error} />
      <div className="table-wrap">
        <table data-testid="users-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">MFA</th>
              <th scope="col">Status</th>
              <th scope="col">Created</th>
              {canManage && (
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              )}
            </tr>
          </thead>
          <tbody>
            {users.data?.map((u) => (
              <tr key={u.id} data-testid={`user-row-${u.email}`}>
                <td>
                  {u.name}
                  {u.id === me.id && <span className="muted"> (you)</span>}
                </td>
                <td>{u.email}</td>
                <td>{roleLabel(u.role)}</td>
                <td>{u.mfa_enabled ? <Badge kind="ok">On</Badge> : <Badge>Off</Badge>}</td>
                <td>{u.disabled ? <Badge kind="bad">Disabled</Badge> : <Badge kind="ok">Active</Badge>}</td>
                <td title={u.created_at}>{formatTime(u.created_at)}</td>
                {canManage && (
                  <td className="actions-cell">
                    <div className="row-actions">
                      <button type="button" className="btn btn-small" onClick={() => setEditing({ kind: 'edit', user: u })} aria-label={`Edit ${u.email}`}>
                        Edit
                      </button>
                      <button type="button" className="btn btn-small" onClick={() => setEditing({ kind: 'password', user: u })} aria-label={`Reset password of ${u.email}`}>
                        Reset password
                      </button>
                      {u.mfa_enabled && u.id !== me.id && (
                        <button type="button" className="btn btn-small" onClick={() => setEditing({ kind: 'reset-mfa', user: u })} aria-label={`Reset second factor of ${u.email}`}>
                          Reset 2FA
                        </button>
                      )}
                      <button
                        type="button"
                        className="btn btn-small btn-danger"
                        onClick={() => setEditing({ kind: 'delete', user: u })}
                        disabled={u.id === me.id}
                        title={u.id === me.id ? 'You cannot delete your own account' : undefined}
                        aria-label={`Delete ${u.email}`}
                      >
                        Delete
                      </button>
                    </div>
                  </td>
                )}
              </tr>
            ))}
            {users.data?.length === 0 && (
              <tr>
                <td colSpan={7} className="muted">
                  No users.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      {users.loading && !users.data && <p className="muted">Loading…</p>}

      <Dialog title="New user" open={editing?.kind === 'create'} onClose={close} testId="user-create-dialog">
        <CreateUserForm roles={roles.data ?? []} onDone={(u) => void done(`Created ${u.email}.`)} onCancel={close} />
      </Dialog>
      <Dialog title="Edit user" open={editing?.kind === 'edit'} onClose={close} testId="user-edit-dialog">
        {editing?.kind === 'edit' && (
          <EditUserForm
            user={editing.user}
            roles={roles.data ?? []}
            onCancel={close}
            onDone={(u) => {
              if (u.id === me.id) void reloadUser();
              void done(`Saved ${u.email}.`);
            }}
          />
        )}
      </Dialog>
      <Dialog title="Reset password" open={editing?.kind === 'password'} onClose={close} testId="user-password-dialog">
        {editing?.kind === 'password' && (
          <ResetPasswordForm user={editing.user} onCancel={close} onDone={(u) => void done(`Password of ${u.email} changed.`)} />
        )}
      </Dialog>
      <ConfirmDialog
        title="Reset two-factor authentication"
        open={editing?.kind === 'reset-mfa'}
        onClose={close}
        confirmLabel="Reset"
        message={
          editing?.kind === 'reset-mfa' ? (
            <>
              Turn off the authenticator and backup codes of <strong>{editing.user.email}</strong>? Their sessions end;
              a sign-in that requires a second factor has them set up a new one.
            </>
          ) : null
        }
        onConfirm={async () => {
          if (editing?.kind !== 'reset-mfa') return;
          const email = editing.user.email;
          await api.resetUserMfa(editing.user.id);
          setFlash(`Two-factor authentication of ${email} reset.`);
          await users.reload();
        }}
      />
      <ConfirmDialog
        title="Delete user"
        open={editing?.kind === 'delete'}
        onClose={close}
        confirmLabel="Delete user"
        message={
          editing?.kind === 'delete' ? (
            <>
              Delete <strong>{editing.user.email}</strong>? Their sessions end at once. This cannot be undone.
            </>
          ) : null
        }
        onConfirm={async () => {
          if (editing?.kind !== 'delete') return;
          const email = editing.user.email;
          await api.deleteUser(editing.user.id);
          setFlash(`Deleted ${email}.`);
          await users.reload();
        }}
      />
    </>
  );
}

function RoleOptions({ roles }: { roles: RoleInfo[] }) {
  return (
    <>
      {roles.map((r) => (
        <option key={r.id} value={r.id}>
          {roleLabel(r.id)} — {r.description}
        </option>
      ))}
    </>
  );
}

function CreateUserForm({
  roles,
  onDone,
  onCancel,
}: {
  roles: RoleInfo[];
  onDone: (u: UserDto) => void;
  onCancel: () => void;
}) {
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState('viewer');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onDone(await api.createUser({ name: name.trim(), email: email.trim(), password, role }));
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit}>
      <FormError error={error} />
      <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required error={error} />
      <TextField label="Email" name="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required autoComplete="off" error={error} />
      <TextField
        label="Initial password"
        name="password"
        type="password"
        value={password}
        onChange={(e) => setPassword(e.target.value)}
        required
        minLength={10}
        autoComplete="new-password"
        hint="At least 10 characters. Share it with the user over a safe channel."
        error={error}
      />
      <SelectField label="Role" name="role" value={role} onChange={(e) => { if (isRole(e.target.value)) setRole(e.target.value); }} error={error}>
        <RoleOptions roles={roles} />
      </SelectField>
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Create user
        </button>
      </div>
    </form>
  );
}

function EditUserForm({
  user,
  roles,
  onDone,
  onCancel,
}: {
  user: UserDto;
  roles: RoleInfo[];
  onDone: (u: UserDto) => void;
  onCancel: () => void;
}) {
  const [name, setName] = useState(user.name);
  const [role, setRole] = useState(user.role);
  const [disabled, setDisabled] = useState(user.disabled);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      // Send only what changed, so the server's audit entry says what happened.
      const patch: UpdateUserRequest = {};
      if (name.trim() !== user.name) patch.name = name.trim();
      if (role !== user.role) patch.role = role;
      if (disabled !== user.disabled) patch.disabled = disabled;
      onDone(Object.keys(patch).length ? await api.updateUser(user.id, patch) : user);
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit}>
      <p className="muted">{user.email}</p>
      <FormError error={error} />
      <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required error={error} />
      <SelectField label="Role" name="role" value={role} onChange={(e) => { if (isRole(e.target.value)) setRole(e.target.value); }} error={error}>
        <RoleOptions roles={roles} />
      </SelectField>
      <CheckboxField label="Disabled (cannot sign in; sessions end)" name="disabled" checked={disabled} onChange={setDisabled} error={error} />
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Save
        </button>
      </div>
    </form>
  );
}

function ResetPasswordForm({
  user,
  onDone,
  onCancel,
}: {
  user: UserDto;
  onDone: (u: UserDto) => void;
  onCancel: () => void;
}) {
  const [password, setPassword] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onDone(await api.updateUser(user.id, { password }));
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit}>
      <p>
        Set a new password for <strong>{user.email}</strong>.
      </p>
      <FormError error={error} />
      <TextField
        label="New password"
        name="password"
        type="password"
        value={password}
        onChange={(e) => setPassword(e.target.value)}
        required
        minLength={10}
        autoComplete="new-password"
        hint="At least 10 characters."
        error={error}
      />
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Set password
        </button>
      </div>
    </form>
  );
}
