import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { ApiError, api, toApiError } from '../api/client';
import type { AuditEventDto, AuditQuery, ChainReport } from '../api/types';
import { Badge, FormError, PageHeader, TextField } from '../components/ui';
import { formatTime, localInputToRfc3339, shortTarget } from '../format';

const PAGE_SIZE = 50;

/** Actions the server writes today; offered as suggestions, any text is accepted. */
const KNOWN_ACTIONS = [
  'setup.complete',
  'auth.login',
  'auth.logout',
  'auth.refresh',
  'auth.refresh_reuse',
  'auth.password_change',
  'auth.session_revoke',
  'mfa.enroll_start',
  'mfa.enable',
  'mfa.disable',
  'mfa.backup_codes_regenerate',
  'user.create',
  'user.update',
  'user.delete',
  'token.create',
  'token.revoke',
];

interface Filters {
  actor: string;
  action: string;
  since: string; // datetime-local value
  until: string;
}

const EMPTY: Filters = { actor: '', action: '', since: '', until: '' };

function toQuery(f: Filters): AuditQuery {
  return {
    actor: f.actor.trim() || undefined,
    action: f.action.trim() || undefined,
    since: localInputToRfc3339(f.since),
    until: localInputToRfc3339(f.until),
    limit: PAGE_SIZE,
  };
}

/** `detail` is free-form JSON (`{}` in the document, so `unknown`). */
function detailText(d: unknown): string {
  if (d === null || d === undefined) return '';
  if (typeof d === 'object' && !Array.isArray(d) && Object.keys(d).length === 0) return '';
  return JSON.stringify(d);
}

export function AuditPage() {
  const [form, setForm] = useState<Filters>(EMPTY);
  const [applied, setApplied] = useState<Filters>(EMPTY);
  const [events, setEvents] = useState<AuditEventDto[]>([]);
  const [cursor, setCursor] = useState<number | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [report, setReport] = useState<ChainReport | null>(null);
  const [verifyError, setVerifyError] = useState<ApiError | null>(null);
  const [verifying, setVerifying] = useState(false);

  const load = useCallback(async (filters: Filters, before: number | null) => {
    setLoading(true);
    setError(null);
    try {
      const page = await api.audit({ ...toQuery(filters), before_seq: before ?? undefined });
      setEvents((prev) => (before === null ? page.events : [...prev, ...page.events]));
      // The server may hand out a cursor after a full last page; an empty page ends it.
      setCursor(page.events.length > 0 ? (page.next_cursor ?? null) : null);
    } catch (e) {
      setError(toApiError(e));
    } finally {
      setLoading(false);
    }
  }, []);

  useEffect(() => {
    void load(applied, null);
  }, [applied, load]);

  function submit(e: FormEvent) {
    e.preventDefault();
    setApplied({ ...form });
  }

  async function verify() {
    setVerifying(true);
    setVerifyError(null);
    setReport(null);
    try {
      setReport(await api.auditVerify());
    } catch (e) {
      setVerifyError(toApiError(e));
    } finally {
      setVerifying(false);
    }
  }

  const set = (k: keyof Filters) => (e: { target: { value: string } }) => setForm((f) => ({ ...f, [k]: e.target.value }));

  return (
    <>
      <PageHeader title="Audit log">
        <button type="button" className="btn" onClick={() => void verify()} disabled={verifying}>
          {verifying ? 'Verifying…' : 'Verify chain'}
        </button>
      </PageHeader>

      {(report || verifyError) && (
        <div
          className={`alert ${report?.ok ? 'alert-success' : 'alert-error'}`}
          role="status"
          data-testid="verify-result"
          data-ok={report ? String(report.ok) : 'error'}
        >
          {verifyError && <>Could not verify: {verifyError.message}</>}
          {report?.ok && (
            <>
              <strong>Chain OK</strong> — {report.checked} events checked, every hash matches.
            </>
          )}
          {report && !report.ok && (
            <>
              <strong>Chain broken</strong> — {report.checked} events checked.{' '}
              {report.first_bad_event ? (
                <>
                  First bad event: #{report.first_bad_event.seq}
                  {report.first_bad_event.id ? ` (${report.first_bad_event.id})` : ''}: {report.first_bad_event.reason}
                </>
              ) : (
                'The server named no event.'
              )}
            </>
          )}
        </div>
      )}

      <form className="filters" onSubmit={submit} aria-label="Filter audit events">
        <TextField label="Actor" name="actor" value={form.actor} onChange={set('actor')} placeholder="email, anonymous or cli" error={error} />
        <TextField label="Action" name="action" value={form.action} onChange={set('action')} placeholder="e.g. auth.login" list="audit-actions" error={error} />
        <datalist id="audit-actions">
          {KNOWN_ACTIONS.map((a) => (
            <option key={a} value={a} />
          ))}
        </datalist>
        <TextField label="Since" name="since" type="datetime-local" step={1} value={form.since} onChange={set('since')} error={error} />
        <TextField label="Until" name="until" type="datetime-local" step={1} value={form.until} onChange={set('until')} error={error} />
        <div className="filter-buttons">
          <button type="submit" className="btn btn-primary">
            Apply filters
          </button>
          <button
            type="button"
            className="btn"
            onClick={() => {
              setForm(EMPTY);
              setApplied({ ...EMPTY });
            }}
          >
            Reset
          </button>
        </div>
      </form>

      <FormError error={error} />
      <div className="table-wrap">
        <table data-testid="audit-table" className="audit-table">
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Time</th>
              <th scope="col">Actor</th>
              <th scope="col">Action</th>
              <th scope="col">Target</th>
              <th scope="col">Outcome</th>
              <th scope="col">IP</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {events.map((ev) => (
              <tr key={ev.seq} data-testid="audit-row" data-action={ev.action}>
                <td className="num">{ev.seq}</td>
                <td title={ev.at}>{formatTime(ev.at)}</td>
                <td>{ev.actor}</td>
                <td>
                  <code>{ev.action}</code>
                </td>
                <td title={ev.target}>{shortTarget(ev.target)}</td>
                <td>
                  <Badge kind={ev.outcome === 'success' ? 'ok' : 'bad'}>{ev.outcome}</Badge>
                </td>
                <td>{ev.ip}</td>
                <td className="wrap detail">
                  <code title={`hash ${ev.hash}`}>{detailText(ev.detail)}</code>
                </td>
              </tr>
            ))}
            {!loading && events.length === 0 && !error && (
              <tr>
                <td colSpan={8} className="muted">
                  No events match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <div className="load-more">
        {loading && <span className="muted">Loading…</span>}
        {!loading && cursor !== null && (
          <button type="button" className="btn" onClick={() => void load(applied, cursor)}>
            Load more
          </button>
        )}
        {!loading && cursor === null && events.length > 0 && <span className="muted">End of the log.</span>}
      </div>
    </>
  );
}
