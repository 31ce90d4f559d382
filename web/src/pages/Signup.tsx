// Public sign-up (SaaS edition): a person and their organisation; then the mailed link
// (`/signup/verify#<token>`) proves the email before the first sign-in.

import { useEffect, useRef, useState, type FormEvent } from 'react';
import { Link, useLocation, useNavigate } from 'react-router-dom';
import { ApiError, api, toApiError } from '../api/client';
import type { SignUpResponse } from '../api/types';
import { CornerThemeToggle } from '../components/Layout';
import { FormError, Notice, TextField } from '../components/ui';

export function SignupPage() {
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [organisation, setOrganisation] = useState('');
  const [password, setPassword] = useState('');
  const [confirm, setConfirm] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<SignUpResponse | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (password !== confirm) {
      setError(new ApiError(0, 'client', 'The two passwords do not match.', 'confirm'));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      setDone(await api.signUp({ name: name.trim(), email: email.trim(), organisation: organisation.trim(), password }));
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  if (done) {
    return (
      <div className="auth-page">
        <CornerThemeToggle />
        <div className="card auth-card" data-testid="signup-done">
          <h1>Check your mail</h1>
          {done.mailed ? (
            <p>
              We sent a link to <strong>{email.trim()}</strong>. Follow it to confirm your email, then sign in.
            </p>
          ) : (
            <Notice kind="warning">
              The confirmation mail could not be sent ({done.mail_error ?? 'no mail settings'}). Ask the operator of this InfraPilot
              to check its mail settings.
            </Notice>
          )}
          <Link to="/login" className="btn btn-block">
            Back to sign in
          </Link>
        </div>
      </div>
    );
  }

  return (
    <div className="auth-page">
      <CornerThemeToggle />
      <form className="card auth-card" onSubmit={submit} aria-labelledby="signup-title" data-testid="signup-form">
        <h1 id="signup-title">Create your account</h1>
        <p className="muted">You get an organisation of your own; invite your team to it later.</p>
        <FormError error={error} />
        <TextField label="Your name" name="name" value={name} onChange={(e) => setName(e.target.value)} required autoComplete="name" error={error} />
        <TextField label="Email" name="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required autoComplete="username" error={error} />
        <TextField
          label="Organisation"
          name="organisation"
          value={organisation}
          onChange={(e) => setOrganisation(e.target.value)}
          required
          maxLength={100}
          hint="Your team or company, e.g. “Acme Ops”."
          error={error}
        />
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
          {busy ? 'Creating…' : 'Create account'}
        </button>
        <p className="muted">
          Already have an account? <Link to="/login">Sign in</Link>
        </p>
      </form>
    </div>
  );
}

/** The token of a mailed link: it travels in the fragment, which browsers never send to a server. */
export function useFragmentToken(): string {
  const location = useLocation();
  // Tokens are base64url: anything else in the fragment is not a token (and is not decoded).
  const raw = location.hash.replace(/^#/, '').trim();
  return /^[A-Za-z0-9_-]{1,200}$/.test(raw) ? raw : '';
}

export function VerifyEmailPage() {
  const navigate = useNavigate();
  const token = useFragmentToken();
  const [error, setError] = useState<ApiError | null>(null);
  const sent = useRef(false);

  useEffect(() => {
    // Once: the token is single use, and React may run effects twice in development.
    if (sent.current) return;
    sent.current = true;
    if (!token) {
      setError(new ApiError(0, 'client', 'This link has no token; open the link from the mail exactly as it was sent.', 'token'));
      return;
    }
    api
      .verifyEmail(token)
      .then(() =>
        navigate('/login', { replace: true, state: { notice: 'Your email is confirmed. Sign in to set up your first node.' } }),
      )
      .catch((e) => setError(toApiError(e)));
  }, [token, navigate]);

  return (
    <div className="auth-page">
      <CornerThemeToggle />
      <div className="card auth-card" data-testid="verify-email">
        <h1>Confirming your email…</h1>
        {error ? (
          <>
            <FormError error={error} />
            <Link to="/login" className="btn btn-block">
              Back to sign in
            </Link>
          </>
        ) : (
          <p className="muted">One moment.</p>
        )}
      </div>
    </div>
  );
}
