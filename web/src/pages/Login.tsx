import { useEffect, useState, type FormEvent } from 'react';
import { Link, useLocation, useSearchParams } from 'react-router-dom';
import { ApiError, api, ssoStartUrl, toApiError } from '../api/client';
import { isMfaRequired, type LoginProviderDto, type MfaRequired } from '../api/types';
import { useAuth } from '../auth';
import { CornerThemeToggle } from '../components/Layout';
import { MfaStep } from '../components/mfa';
import { FormError, Notice, TextField } from '../components/ui';

/** Why the last single sign-on failed: the host's short-lived cookie (a link cannot set it, so
 *  no one can put words on this page through a crafted URL); read once, then cleared. */
function takeSsoError(): string {
  const entry = document.cookie.split('; ').find((c) => c.startsWith('infrapilot_sso_error='));
  document.cookie = 'infrapilot_sso_error=; Path=/; Max-Age=0; SameSite=Lax';
  if (!entry) return 'Single sign-on did not complete; try again.';
  try {
    return decodeURIComponent(entry.slice('infrapilot_sso_error='.length).replace(/\+/g, ' '));
  } catch {
    return 'Single sign-on did not complete; try again.';
  }
}

export function LoginPage() {
  const { state, signIn } = useAuth();
  const initial = state.status === 'anonymous' ? state : null;
  // A page that sent us here may say why (e.g. an invitation to accept once signed in).
  const location = useLocation();
  const notice = initial?.notice ?? (location.state as { notice?: string } | null)?.notice;
  // Single sign-on: the providers of the organisation in `?org=` (else the host's own), and why
  // the last SSO attempt failed (the host sends the browser back with `sso_error`).
  const [params] = useSearchParams();
  const org = params.get('org') ?? undefined;
  const [ssoError] = useState(() => (params.get('sso_error') ? takeSsoError() : null));
  const [providers, setProviders] = useState<LoginProviderDto[]>([]);
  useEffect(() => {
    api
      .loginProviders(org)
      .then(setProviders)
      .catch(() => setProviders([]));
  }, [org]);
  // A directory provider (LDAP) chosen on this page: its username and password form.
  const [directory, setDirectory] = useState<LoginProviderDto | null>(null);
  const [email, setEmail] = useState(initial?.email ?? '');
  const [password, setPassword] = useState('');
  // The second step: TOTP, or setting it up when a provider requires this host's.
  const [mfaStep, setMfaStep] = useState<MfaRequired | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submitPassword(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const res = await api.login({ email: email.trim(), password });
      if (isMfaRequired(res)) {
        setMfaStep(res);
        setPassword('');
        setBusy(false);
      } else {
        await signIn(res);
      }
    } catch (err) {
      setError(toApiError(err));
      setBusy(false);
    }
  }

  async function submitDirectory(e: FormEvent) {
    e.preventDefault();
    if (!directory) return;
    setBusy(true);
    setError(null);
    try {
      const res = await api.directorySignIn(directory.id, org, email.trim(), password);
      if (isMfaRequired(res)) {
        setMfaStep(res);
        setPassword('');
        setBusy(false);
      } else {
        await signIn(res);
      }
    } catch (err) {
      setError(toApiError(err));
      setPassword('');
      setBusy(false);
    }
  }

  if (mfaStep) {
    return (
      <MfaStep
        step={mfaStep}
        onSigned={signIn}
        onBack={() => {
          setMfaStep(null);
          setError(null);
        }}
      />
    );
  }

  if (directory) {
    return (
      <div className="auth-page">
        <CornerThemeToggle />
        <form className="card auth-card" onSubmit={submitDirectory} aria-labelledby="directory-title" data-testid="directory-form">
          <h1 id="directory-title">Sign in with {directory.name}</h1>
          <p className="muted">Your directory username and password; the directory checks them.</p>
          <FormError error={error} />
          <TextField
            label="Username"
            name="username"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            required
            autoComplete="username"
            autoFocus
            spellCheck={false}
            error={error}
          />
          <TextField
            label="Password"
            name="password"
            type="password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
            autoComplete="current-password"
            error={error}
          />
          <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
          <button
            type="button"
            className="btn btn-ghost btn-block"
            onClick={() => {
              setDirectory(null);
              setPassword('');
              setError(null);
            }}
          >
            Other ways to sign in
          </button>
        </form>
      </div>
    );
  }

  return (
    <div className="auth-page">
      <CornerThemeToggle />
      <form className="card auth-card" onSubmit={submitPassword} aria-labelledby="login-title" data-testid="login-form">
        <h1 id="login-title">Sign in to InfraPilot</h1>
        {notice && !error && <Notice>{notice}</Notice>}
        {ssoError && !error && <FormError error={new ApiError(0, 'sso_refused', ssoError)} />}
        <FormError error={error} />
        {providers.length > 0 && (
          <div className="sso-buttons" data-testid="sso-buttons">
            {providers.map((p) =>
              p.login === 'password' ? (
                <button
                  key={p.id}
                  type="button"
                  className="btn btn-block"
                  onClick={() => {
                    setDirectory(p);
                    setEmail('');
                    setPassword('');
                    setError(null);
                  }}
                >
                  Sign in with {p.name}
                </button>
              ) : (
                <a key={p.id} className="btn btn-block" href={ssoStartUrl(p.id, org)}>
                  Sign in with {p.name}
                </a>
              ),
            )}
            <p className="muted sso-or">or with your email and password</p>
          </div>
        )}
        <TextField label="Email" name="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required autoComplete="username" autoFocus={!email} error={error} />
        <TextField
          label="Password"
          name="password"
          type="password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          required
          autoComplete="current-password"
          autoFocus={!!email}
          error={error}
        />
        <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {initial?.signupOpen && (
          <p className="muted">
            New here?{' '}
            <Link to="/signup" data-testid="signup-link">
              Create an account
            </Link>
          </p>
        )}
      </form>
    </div>
  );
}
