import { useState, type FormEvent } from 'react';
import { ApiError, api, toApiError } from '../api/client';
import { useAuth } from '../auth';
import { CornerThemeToggle } from '../components/Layout';
import { FormError, TextField } from '../components/ui';

export function SetupPage() {
  const { reload } = useAuth();
  const [setupCode, setSetupCode] = useState('');
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [confirm, setConfirm] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (password !== confirm) {
      setError(new ApiError(0, 'client', 'The two passwords do not match.', 'confirm'));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await api.setup({ setup_code: setupCode.trim(), name: name.trim(), email: email.trim(), password });
      await reload({ notice: 'Administrator account created. Sign in to continue.', email: email.trim() });
    } catch (err) {
      setError(toApiError(err));
      setBusy(false);
    }
  }

  return (
    <div className="auth-page">
      <CornerThemeToggle />
      <form className="card auth-card" onSubmit={submit} noValidate={false} aria-labelledby="setup-title">
        <h1 id="setup-title">Welcome to InfraPilot</h1>
        <p className="muted">Create the first administrator account. It gets the super admin role.</p>
        <FormError error={error} />
        <TextField
          label="Setup code"
          name="setup_code"
          value={setupCode}
          onChange={(e) => setSetupCode(e.target.value)}
          required
          autoComplete="off"
          spellCheck={false}
          hint="Proves you run this server: it is in the server's log at first start and in the file setup-code in its data directory."
          error={error}
        />
        <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required autoComplete="name" error={error} />
        <TextField label="Email" name="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required autoComplete="username" error={error} />
        <TextField
          label="Password"
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
        <TextField
          label="Confirm password"
          name="confirm"
          type="password"
          value={confirm}
          onChange={(e) => setConfirm(e.target.value)}
          required
          autoComplete="new-password"
          error={error}
        />
        <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Creating…' : 'Create administrator'}
        </button>
      </form>
    </div>
  );
}
