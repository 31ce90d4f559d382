// The second step of a sign-in (a password login with TOTP on, or a single sign-on provider that
// requires this host's second factor), and the backup codes shown once after an enrolment.

import { useState, type FormEvent } from 'react';
import { ApiError, api, setTokens, toApiError } from '../api/client';
import type { MfaEnrollResponse, MfaRequired, TokenPair } from '../api/types';
import { CornerThemeToggle } from './Layout';
import { CopyButton, FormError, TextField } from './ui';

/** A new authenticator's QR code, and its secret to type by hand. */
export function TotpSetup({ enrollment }: { enrollment: MfaEnrollResponse }) {
  return (
    <>
      <div className="qr">
        <img src={enrollment.qr_svg_data_url} alt="QR code of the TOTP secret" width={200} height={200} data-testid="totp-qr" />
      </div>
      <p className="muted">
        Or enter this secret by hand:{' '}
        <code className="secret" data-testid="totp-secret">
          {enrollment.secret}
        </code>{' '}
        <CopyButton text={enrollment.secret} />
      </p>
    </>
  );
}

export function BackupCodeList({ codes, onDone }: { codes: string[]; onDone: () => void }) {
  return (
    <div className="backup-codes" role="status">
      <p>
        <strong>Save these backup codes now.</strong> Each works once if you lose your authenticator; they are not shown
        again.
      </p>
      <ol className="code-grid" data-testid="backup-codes">
        {codes.map((c) => (
          <li key={c}>
            <code>{c}</code>
          </li>
        ))}
      </ol>
      <div className="actions actions-left">
        <CopyButton text={codes.join('\n')} label="Copy all" />
        <button type="button" className="btn btn-primary" onClick={onDone}>
          I have saved these codes
        </button>
      </div>
    </div>
  );
}

/** The code step: with `step.enrollment`, the authenticator to set up first (its first code
 *  confirms it), then the backup codes it came with. `onSigned` gets the session. */
export function MfaStep({
  step,
  onSigned,
  onBack,
}: {
  step: MfaRequired;
  onSigned: (pair: TokenPair) => Promise<void> | void;
  onBack: () => void;
}) {
  const [code, setCode] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [enrolled, setEnrolled] = useState<TokenPair | null>(null);
  const enrollment = step.enrollment ?? null;

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const pair = await api.mfaVerify(step.mfa_token, code.trim());
      if (pair.backup_codes?.length) {
        // Signed in before the codes show: leaving this page keeps the session.
        setTokens(pair);
        setEnrolled(pair);
        setBusy(false);
      } else {
        await onSigned(pair);
      }
    } catch (err) {
      setError(toApiError(err));
      setBusy(false);
    }
  }

  if (enrolled) {
    return (
      <div className="auth-page">
        <CornerThemeToggle />
        <div className="card auth-card" data-testid="mfa-enrolled">
          <h1>Two-factor authentication is on</h1>
          <BackupCodeList codes={enrolled.backup_codes ?? []} onDone={() => void onSigned(enrolled)} />
        </div>
      </div>
    );
  }

  return (
    <div className="auth-page">
      <CornerThemeToggle />
      <form className="card auth-card" onSubmit={submit} aria-labelledby="mfa-title" data-testid="mfa-step">
        <h1 id="mfa-title">Two-factor authentication</h1>
        {enrollment ? (
          <div data-testid="mfa-enrol">
            <p className="muted">
              This sign-in requires a second factor on this host. Set up an authenticator app (TOTP) now:
            </p>
            <TotpSetup enrollment={enrollment} />
            <p className="muted">Then enter the 6-digit code the app shows.</p>
          </div>
        ) : (
          <p className="muted">Enter the 6-digit code from your authenticator app, or one of your backup codes.</p>
        )}
        <FormError error={error} />
        <TextField
          label="Authentication code"
          name="code"
          value={code}
          onChange={(e) => setCode(e.target.value)}
          required
          autoFocus
          autoComplete="one-time-code"
          inputMode={enrollment ? 'numeric' : 'text'}
          spellCheck={false}
          hint={enrollment ? 'For example 123456.' : 'For example 123456, or a backup code such as k7q2-9xmf.'}
          error={error}
        />
        <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Verifying…' : enrollment ? 'Confirm and sign in' : 'Verify'}
        </button>
        <button type="button" className="btn btn-ghost btn-block" onClick={onBack}>
          Back to sign in
        </button>
      </form>
    </div>
  );
}
