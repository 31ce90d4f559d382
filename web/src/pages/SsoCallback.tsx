// `/login/sso#<code>`: where the host sends the browser after a single sign-on login; the
// one-time code (in the fragment, never sent to a server by the browser) becomes a session.

import { useEffect, useRef, useState } from 'react';
import { Link, useNavigate } from 'react-router-dom';
import { ApiError, api, toApiError } from '../api/client';
import { isMfaRequired, type MfaRequired } from '../api/types';
import { useAuth } from '../auth';
import { CornerThemeToggle } from '../components/Layout';
import { MfaStep } from '../components/mfa';
import { FormError } from '../components/ui';
import { useFragmentToken } from './Signup';

export function SsoCallbackPage() {
  const { signIn } = useAuth();
  const code = useFragmentToken();
  const [error, setError] = useState<ApiError | null>(null);
  // The provider requires this host's second factor too.
  const [mfaStep, setMfaStep] = useState<MfaRequired | null>(null);
  const navigate = useNavigate();
  const sent = useRef(false);

  useEffect(() => {
    if (sent.current) return;
    sent.current = true;
    // The code is spent now: keep it out of the browser's history.
    window.history.replaceState(null, '', '/login/sso');
    if (!code) {
      setError(new ApiError(0, 'client', 'This page needs the code the sign-in sent; sign in again.', 'code'));
      return;
    }
    api
      .exchangeSsoCode(code)
      .then((res) => (isMfaRequired(res) ? setMfaStep(res) : signIn(res)))
      .catch((e) => setError(toApiError(e)));
  }, [code, signIn]);

  if (mfaStep) {
    return <MfaStep step={mfaStep} onSigned={signIn} onBack={() => navigate('/login')} />;
  }

  return (
    <div className="auth-page">
      <CornerThemeToggle />
      <div className="card auth-card" data-testid="sso-callback">
        <h1>Signing you in…</h1>
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
