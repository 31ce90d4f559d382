import { alertsApi } from '../api/alerts';
import { Badge, FormError, PageHeader, usePoll } from '../components/ui';
import { formatTime } from '../format';

/** What fired and resolved, with each channel's delivery result; refreshed every 5 s. */
export function AlertHistoryPage() {
  const history = usePoll(() => alertsApi.history(), 5000);
  return (
    <>
      <PageHeader title="Alert history" />
      <FormError error={history.error} />
      <div className="table-wrap">
        <table data-testid="history-table">
          <thead>
            <tr>
              <th scope="col">Fired</th>
              <th scope="col">State</th>
              <th scope="col">Rule</th>
              <th scope="col">What</th>
              <th scope="col">Deliveries</th>
            </tr>
          </thead>
          <tbody>
            {history.data?.map((e) => (
              <tr key={e.id}>
                <td title={e.fired_at}>{formatTime(e.fired_at)}</td>
                <td>
                  {e.state === 'firing' ? <Badge kind="bad">Firing</Badge> : <Badge kind="ok">Resolved</Badge>}
                  {e.resolved_at && <div className="small muted">{formatTime(e.resolved_at)}</div>}
                </td>
                <td>
                  {e.rule_name ?? e.rule_id}
                  <div className="small muted">{e.severity}</div>
                </td>
                <td>
                  {e.summary}
                  {e.occurrences > 1 && <div className="small muted">{e.occurrences} occurrences (within the cooldown)</div>}
                </td>
                <td className="small">
                  {e.deliveries.map((d, i) => (
                    <div key={i}>
                      <Badge kind={d.state === 'delivered' ? 'ok' : d.state === 'failed' ? 'bad' : 'warn'}>{d.state}</Badge> {d.channel_name ?? d.channel_id} ({d.transition}
                      {d.attempts > 1 ? `, ${d.attempts} attempts` : ''}){d.last_error ? `: ${d.last_error}` : d.detail ? `: ${d.detail}` : ''}
                    </div>
                  ))}
                </td>
              </tr>
            ))}
            {history.data?.length === 0 && (
              <tr>
                <td colSpan={5} className="muted">
                  Nothing has fired yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </>
  );
}
