import { useState, type FormEvent } from 'react';
import { ApiError, api, toApiError } from '../api/client';
import type { MfaEnrollResponse, SessionDto } from '../api/types';
import { useAuth, useUser } from '../auth';
import { BackupCodeList, TotpSetup } from '../components/mfa';
import { Badge, Dialog, FormError, Notice, PageHeader, TextField, useLoad } from '../components/ui';
import { describeUserAgent, formatTime } from '../format';
import { roleLabel } from '../roles';

export function ProfilePage() {
  const user = useUser();
  return (
    <>
      <PageHeader title="Profile" />
      <section className="card" aria-labelledby="account-title">
        <h2 id="account-title">Account</h2>
        <dl className="facts">
          <dt>Name</dt>
          <dd>{user.name}</dd>
          <dt>Email</dt>
          <dd>{user.email}</dd>
          <dt>Role</dt>
          <dd>{roleLabel(user.role)}</dd>
          <dt>Member since</dt>
          <dd title={user.created_at}>{formatTime(user.created_at)}</dd>
        </dl>
      </section>
      <ChangePassword />
      <TwoFactor />
      <Sessions />
    </>
  );
}

// ---- password -------------------------------------------------------------

function ChangePassword() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [confirm, setConfirm] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setDone(false);
    if (next !== confirm) {
      setError(new ApiError(0, 'client', 'The two new passwords do not match.', 'confirm_password'));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await api.changePassword({ current_password: current, new_password: next });
      setCurrent('');
      setNext('');
      setConfirm('');
      setDone(true);
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card" aria-labelledby="password-title">
      <h2 id="password-title">Change password</h2>
      <form onSubmit={submit} className="narrow">
        {done && <Notice kind="success">Password changed.</Notice>}
        <FormError error={error} />
        <TextField label="Current password" name="current_password" type="password" value={current} onChange={(e) => setCurrent(e.target.value)} required autoComplete="current-password" error={error} />
        <TextField
          label="New password"
          name="new_password"
          type="password"
          value={next}
          onChange={(e) => setNext(e.target.value)}
          required
          minLength={10}
          autoComplete="new-password"
          hint="At least 10 characters."
          error={error}
        />
        <TextField label="Confirm new password" name="confirm_password" type="password" value={confirm} onChange={(e) => setConfirm(e.target.value)} required autoComplete="new-password" error={error} />
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Change password
        </button>
      </form>
    </section>
  );
}

// ---- two-factor -----------------------------------------------------------

function TwoFactor() {
  const { reloadUser } = useAuth();
  const status = useLoad(() => api.mfaStatus());
  const [enrolment, setEnrolment] = useState<MfaEnrollResponse | null>(null);
  const [codes, setCodes] = useState<string[] | null>(null);
  const [code, setCode] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [dialog, setDialog] = useState<'disable' | 'regenerate' | null>(null);

  async function startEnrol() {
    setBusy(true);
    setError(null);
    try {
      setEnrolment(await api.mfaEnroll());
      setCode('');
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  async function confirm(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const res = await api.mfaConfirm(code.trim());
      setEnrolment(null);
      setCodes(res.backup_codes);
      await Promise.all([status.reload(), reloadUser()]);
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  const s = status.data;

  return (
    <section className="card" aria-labelledby="mfa-title" data-testid="mfa-section">
      <h2 id="mfa-title">Two-factor authentication</h2>
      <FormError error={status.error} />
      {codes && <BackupCodeList codes={codes} onDone={() => setCodes(null)} />}

      {s && !codes && (
        <p>
          Status:{' '}
          {s.enabled ? (
            <>
              <Badge kind="ok">On</Badge> {s.backup_codes_remaining} backup codes left.
            </>
          ) : (
            <Badge kind="warn">Off</Badge>
          )}
        </p>
      )}

      {s && !s.enabled && !enrolment && !codes && (
        <>
          <p className="muted">
            Use an authenticator app (TOTP) as a second step when you sign in.
            {s.pending && ' A set-up was started but not finished; starting again makes a new secret.'}
          </p>
          <FormError error={error} />
          <button type="button" className="btn btn-primary" onClick={() => void startEnrol()} disabled={busy}>
            {s.pending ? 'Restart two-factor set-up' : 'Set up two-factor authentication'}
          </button>
        </>
      )}

      {enrolment && (
        <form onSubmit={confirm} className="enrol" data-testid="mfa-enrol">
          <ol className="steps">
            <li>
              Scan this QR code with your authenticator app (or type its secret):
              <TotpSetup enrollment={enrolment} />
            </li>
            <li>Enter the 6-digit code the app shows:</li>
          </ol>
          <FormError error={error} />
          <TextField
            label="Authentication code"
            name="code"
            value={code}
            onChange={(e) => setCode(e.target.value)}
            required
            inputMode="numeric"
            autoComplete="one-time-code"
            pattern="[0-9 ]{6,7}"
            className="narrow"
            error={error}
          />
          <div className="actions actions-left">
            <button type="submit" className="btn btn-primary" disabled={busy}>
              Confirm and turn on
            </button>
            <button
              type="button"
              className="btn"
              onClick={() => {
                setEnrolment(null);
                setError(null);
                void status.reload();
              }}
            >
              Cancel
            </button>
          </div>
        </form>
      )}

      {s?.enabled && !codes && (
        <div className="actions actions-left">
          <button type="button" className="btn" onClick={() => setDialog('regenerate')}>
            New backup codes
          </button>
          <button type="button" className="btn btn-danger" onClick={() => setDialog('disable')}>
            Turn off two-factor authentication
          </button>
        </div>
      )}

      <Dialog title="Turn off two-factor authentication" open={dialog === 'disable'} onClose={() => setDialog(null)}>
        <PasswordConfirm
          explanation="Signing in will need only your password. Your backup codes stop working."
          submitLabel="Turn off"
          danger
          onCancel={() => setDialog(null)}
          action={async (password) => {
            await api.mfaDisable(password);
            setDialog(null);
            await Promise.all([status.reload(), reloadUser()]);
          }}
        />
      </Dialog>
      <Dialog title="New backup codes" open={dialog === 'regenerate'} onClose={() => setDialog(null)}>
        <PasswordConfirm
          explanation="Your old backup codes stop working."
          submitLabel="Make new codes"
          onCancel={() => setDialog(null)}
          action={async (password) => {
            const res = await api.mfaBackupCodes(password);
            setDialog(null);
            setCodes(res.backup_codes);
            await status.reload();
          }}
        />
      </Dialog>
    </section>
  );
}

function PasswordConfirm({
  explanation,
  submitLabel,
  danger,
  action,
  onCancel,
}: {
  explanation: string;
  submitLabel: string;
  danger?: boolean;
  action: (password: string) => Promise<void>;
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
      await action(password);
    } catch (err) {
      setError(toApiError(err));
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit}>
      <p>{explanation}</p>
      <FormError error={error} />
      <TextField label="Your password" name="password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} required autoComplete="current-password" error={error} />
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className={`btn ${danger ? 'btn-danger' : 'btn-primary'}`} disabled={busy}>
          {submitLabel}
        </button>
      </div>
    </form>
  );
}

// ---- sessions -------------------------------------------------------------

function Sessions() {
  const sessions = useLoad(() => api.sessions());
  const [error, setError] = useState<ApiError | null>(null);

  async function revoke(s: SessionDto) {
    setError(null);
    try {
      await api.revokeSession(s.id);
      await sessions.reload();
    } catch (err) {
      setError(toApiError(err));
    }
  }

  return (
    <section className="card" aria-labelledby="sessions-title">
      <h2 id="sessions-title">Sessions</h2>
      <p className="muted">
        Where you are signed in. Revoking a session signs that browser out; use “Sign out” at the top for this one.
      </p>
      <FormError error={error ?? sessions.error} />
      <div className="table-wrap">
        <table data-testid="sessions-table">
          <thead>
            <tr>
              <th scope="col">Browser</th>
              <th scope="col">IP</th>
              <th scope="col">Signed in</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {sessions.data?.map((s) => (
              <tr key={s.id}>
                <td title={s.user_agent}>
                  {describeUserAgent(s.user_agent)}
                </td>
                <td>{s.ip}</td>
                <td title={s.created_at}>{formatTime(s.created_at)}</td>
                <td title={s.last_used_at}>{formatTime(s.last_used_at)}</td>
                <td title={s.expires_at}>{formatTime(s.expires_at)}</td>
                <td className="actions-cell">
                  <div className="row-actions">
                    {s.current ? (
                      <Badge kind="ok">This session</Badge>
                    ) : (
                      <button type="button" className="btn btn-small btn-danger" onClick={() => void revoke(s)} aria-label={`Revoke session from ${s.ip}`}>
                        Revoke
                      </button>
                    )}
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
