// `/invitations/accept#<token>`: join an organisation through a mailed invitation. Signed out, it
// sends the person to sign in first and comes back here (the fragment kept).

import { useEffect, useRef, useState } from 'react';
import { Link, useLocation, useNavigate } from 'react-router-dom';
import { ApiError, api, toApiError } from '../api/client';
import { useAuth } from '../auth';
import { CornerThemeToggle } from '../components/Layout';
import { FormError, PageHeader } from '../components/ui';
import { useFragmentToken } from './Signup';

export function AcceptInvitationPage() {
  const { switchOrg } = useAuth();
  const navigate = useNavigate();
  const token = useFragmentToken();
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function accept() {
    setBusy(true);
    setError(null);
    try {
      const org = await api.acceptInvitation(token);
      await switchOrg(org.id);
      navigate('/', { replace: true });
    } catch (err) {
      setError(toApiError(err));
      setBusy(false);
    }
  }

  return (
    <>
      <PageHeader title="Invitation" />
      <div className="card" data-testid="accept-invitation">
        {token ? (
          <>
            <p>You were invited to join an organisation. Accepting adds it to your organisations; switch between them at the top.</p>
            <FormError error={error} />
            <button type="button" className="btn btn-primary" onClick={() => void accept()} disabled={busy}>
              Accept the invitation
            </button>
          </>
        ) : (
          <p role="alert">This link has no invitation token; open the link from the mail exactly as it was sent.</p>
        )}
      </div>
    </>
  );
}

/** Signed out: sign in (as the invited email) first, then back here. */
export function AcceptInvitationSignedOut() {
  const location = useLocation();
  const navigate = useNavigate();
  const { state } = useAuth();
  const from = location.pathname + location.hash;
  const sent = useRef(false);

  useEffect(() => {
    if (sent.current) return;
    sent.current = true;
    navigate('/login', {
      replace: true,
      state: { from, notice: 'Sign in with the invited email to accept the invitation.' },
    });
  }, [from, navigate]);

  return (
    <div className="auth-page">
      <CornerThemeToggle />
      <div className="card auth-card">
        <p>
          <Link to="/login" state={{ from }}>
            Sign in
          </Link>{' '}
          to accept the invitation.
          {state.status === 'anonymous' && state.signupOpen && ' No account yet? Create one first, then open the link again.'}
        </p>
      </div>
    </div>
  );
}
