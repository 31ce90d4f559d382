// The Logs page: every stored line of the organisation's nodes, filtered by node, container,
// compose project, level, stream, text and time; newest first with "Load older"; a volume chart
// per minute by level for the same filters; "Live" adds lines as the host stores them; "Export
// CSV" downloads exactly what the filters select. Gaps (lines a node dropped past its spool's
// bound) are shown above the lines.

import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { ApiError, freshAccessToken, socketProtocols, socketUrl, toApiError } from '../api/client';
import { nodesApi, type Agent } from '../api/containers';
import { LOGS_STREAM_PATH, logsApi, type LogFilters } from '../api/logs';
import type { LogGapDto, LogLineDto, LogVolumeDto } from '../api/types';
import { StackedBars, type StackSeries } from '../components/charts';
import { Badge, FormError, Notice, PageHeader, SelectField, TextField } from '../components/ui';
import { formatTime, localInputToRfc3339 } from '../format';

const PAGE = 200;
/** Lines kept on screen while live; the oldest go past this. */
const MAX_LINES = 3000;
const LEVELS = ['error', 'warn', 'info', 'debug', 'none'] as const;
const LEVEL_COLORS: Record<(typeof LEVELS)[number], string> = {
  error: '#d64545',
  warn: '#e0a030',
  info: '#3b82c4',
  debug: '#8a8f98',
  none: '#c9ced6',
};

interface Form {
  agent: string;
  container: string;
  project: string;
  levels: string[];
  stream: string;
  q: string;
  since: string; // datetime-local
  until: string;
}

const EMPTY: Form = { agent: '', container: '', project: '', levels: [], stream: '', q: '', since: '', until: '' };

function filtersOf(f: Form): LogFilters {
  return {
    agent: f.agent || undefined,
    container: f.container.trim() || undefined,
    project: f.project.trim() || undefined,
    level: f.levels.length ? f.levels.join(',') : undefined,
    stream: f.stream || undefined,
    q: f.q.trim() || undefined,
    since: localInputToRfc3339(f.since),
    until: localInputToRfc3339(f.until),
  };
}

const lineKey = (l: LogLineDto) => `${l.agent_id}|${l.seq}|${l.time_ns}`;

/** The line with every case-insensitive occurrence of `q` marked. */
function highlighted(line: string, q: string | undefined): ReactNode {
  if (!q) return line;
  const lower = line.toLowerCase();
  const needle = q.toLowerCase();
  const parts: ReactNode[] = [];
  let at = 0;
  for (let i = lower.indexOf(needle); i >= 0 && parts.length < 200; i = lower.indexOf(needle, at)) {
    if (i > at) parts.push(line.slice(at, i));
    parts.push(<mark key={i}>{line.slice(i, i + needle.length)}</mark>);
    at = i + needle.length;
  }
  parts.push(line.slice(at));
  return parts;
}

function levelBadge(level: string | null | undefined) {
  if (!level) return null;
  const kind = level === 'error' ? 'bad' : level === 'warn' ? 'warn' : 'neutral';
  return <Badge kind={kind}>{level}</Badge>;
}

function VolumeChart({ volume }: { volume: LogVolumeDto }) {
  const times = useMemo(() => volume.buckets.map((b) => Date.parse(b.start) / 1000), [volume]);
  const series: StackSeries[] = useMemo(
    () =>
      [...LEVELS].reverse().map((level) => ({
        label: level,
        color: LEVEL_COLORS[level],
        values: volume.buckets.map((b) => b[level]),
      })),
    [volume],
  );
  const total = volume.buckets.reduce((n, b) => n + b.error + b.warn + b.info + b.debug + b.none, 0);
  return (
    <div className="card">
      <p className="muted">
        {total} lines, per {volume.interval_seconds >= 60 ? `${volume.interval_seconds / 60} min` : `${volume.interval_seconds} s`} by level
      </p>
      <StackedBars times={times} series={series} testId="volume-chart" />
    </div>
  );
}

function Gaps({ gaps, nodeName }: { gaps: LogGapDto[]; nodeName: (id: string) => string }) {
  if (gaps.length === 0) return null;
  return (
    <Notice kind="warning">
      <span data-testid="log-gaps">
        Lines were dropped on a node before they reached the host (its spool was full):{' '}
        {gaps.slice(0, 5).map((g, i) => (
          <span key={`${g.agent_id}-${g.first_seq}-${i}`}>
            {i > 0 ? '; ' : ''}
            {nodeName(g.agent_id)}: {g.last_seq - g.first_seq + 1} records ({g.first_seq}–{g.last_seq}) at {formatTime(g.recorded_at)}
          </span>
        ))}
        {gaps.length > 5 ? ` and ${gaps.length - 5} more` : ''}.
      </span>
    </Notice>
  );
}

export function LogsPage() {
  const [form, setForm] = useState<Form>(EMPTY);
  const [applied, setApplied] = useState<Form>(EMPTY);
  const [lines, setLines] = useState<LogLineDto[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [gaps, setGaps] = useState<LogGapDto[]>([]);
  const [volume, setVolume] = useState<LogVolumeDto | null>(null);
  const [agents, setAgents] = useState<Agent[]>([]);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<ApiError | null>(null);
  const [live, setLive] = useState(false);
  const [liveNote, setLiveNote] = useState<string | null>(null);
  const [exporting, setExporting] = useState(false);
  const seq = useRef(0);

  const filters = useMemo(() => filtersOf(applied), [applied]);

  useEffect(() => {
    nodesApi.agents().then(setAgents, () => setAgents([]));
  }, []);
  const nodeName = useCallback((id: string) => agents.find((a) => a.id === id)?.name ?? id.slice(0, 8), [agents]);

  const loadVolume = useCallback(async () => {
    // Whole minutes, at most 1,440 intervals over the filters' time range (default the last hour).
    const until = filters.until ? Date.parse(filters.until) : Date.now();
    const since = filters.since ? Date.parse(filters.since) : until - 3600_000;
    const interval = Math.max(60, Math.ceil((until - since) / 1000 / 1440 / 60) * 60);
    try {
      setVolume(await logsApi.volume(filters, interval));
    } catch {
      setVolume(null);
    }
  }, [filters]);

  const load = useCallback(async () => {
    const mine = ++seq.current;
    setLoading(true);
    setError(null);
    try {
      const page = await logsApi.page(filters, { limit: PAGE });
      if (mine !== seq.current) return;
      setLines(page.items);
      setCursor(page.next_cursor ?? null);
      setGaps(page.gaps);
    } catch (e) {
      if (mine === seq.current) setError(toApiError(e));
    } finally {
      if (mine === seq.current) setLoading(false);
    }
    void loadVolume();
  }, [filters, loadVolume]);

  useEffect(() => {
    void load();
  }, [load]);

  async function loadOlder() {
    if (!cursor) return;
    const mine = seq.current;
    try {
      const page = await logsApi.page(filters, { limit: PAGE, cursor });
      if (mine !== seq.current) return;
      setLines((prev) => prev.concat(page.items));
      setCursor(page.next_cursor ?? null);
    } catch (e) {
      setError(toApiError(e));
    }
  }

  function submit(e: FormEvent) {
    e.preventDefault();
    setApplied({ ...form });
  }

  async function exportCsv() {
    setExporting(true);
    setError(null);
    try {
      const blob = await logsApi.exportCsv(filters);
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = 'logs.csv';
      document.body.appendChild(a);
      a.click();
      a.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      setError(toApiError(e));
    } finally {
      setExporting(false);
    }
  }

  // ---- live ---------------------------------------------------------------------

  useEffect(() => {
    if (!live) return;
    let cancelled = false;
    let ws: WebSocket | null = null;
    let buffer: LogLineDto[] = [];
    const flush = () => {
      if (buffer.length === 0) return;
      const add = buffer.reverse();
      buffer = [];
      setLines((prev) => {
        const seen = new Set(prev.map(lineKey));
        const fresh = add.filter((l) => !seen.has(lineKey(l)));
        const all = fresh.concat(prev);
        return all.length > MAX_LINES ? all.slice(0, MAX_LINES) : all;
      });
    };
    const timer = window.setInterval(flush, 100);
    const volumeTimer = window.setInterval(() => void loadVolume(), 15_000);
    setLiveNote(null);
    freshAccessToken()
      .then((token) => {
        if (cancelled) return;
        ws = new WebSocket(socketUrl(LOGS_STREAM_PATH, { ...filters }), socketProtocols(token));
        ws.onmessage = (ev: MessageEvent) => {
          if (typeof ev.data !== 'string') return;
          try {
            const msg = JSON.parse(ev.data) as { lines?: LogLineDto[]; lagged?: number };
            if (msg.lines) buffer.push(...msg.lines);
            if (msg.lagged) setLiveNote(`The live view fell behind and skipped ${msg.lagged} batches; they are in the history.`);
          } catch {
            // not ours
          }
        };
        ws.onclose = (ev: CloseEvent) => {
          if (cancelled) return;
          flush();
          setLiveNote(`Live updates stopped${ev.reason ? `: ${ev.reason}` : ev.code === 1006 ? ' (connection lost)' : ''}.`);
          setLive(false);
        };
      })
      .catch((e: unknown) => {
        if (!cancelled) {
          setError(toApiError(e));
          setLive(false);
        }
      });
    return () => {
      cancelled = true;
      window.clearInterval(timer);
      window.clearInterval(volumeTimer);
      flush();
      if (ws) {
        ws.onclose = null;
        ws.onmessage = null;
        ws.close(1000);
      }
    };
  }, [live, filters, loadVolume]);

  const set = (patch: Partial<Form>) => setForm((f) => ({ ...f, ...patch }));

  return (
    <div data-testid="logs-page">
      <PageHeader title="Logs">
        <button type="button" className={live ? 'btn btn-primary' : 'btn'} onClick={() => setLive((l) => !l)} data-testid="live-toggle" aria-pressed={live}>
          {live ? 'Live ●' : 'Go live'}
        </button>
        <button type="button" className="btn" onClick={() => void exportCsv()} disabled={exporting} data-testid="export-csv">
          {exporting ? 'Exporting…' : 'Export CSV'}
        </button>
      </PageHeader>

      <form className="filters" onSubmit={submit} data-testid="log-filters">
        <SelectField label="Node" name="agent" value={form.agent} onChange={(e) => set({ agent: e.target.value })}>
          <option value="">All nodes</option>
          {agents.map((a) => (
            <option key={a.id} value={a.id}>
              {a.name}
            </option>
          ))}
        </SelectField>
        <TextField label="Container" name="container" value={form.container} placeholder="name or id" onChange={(e) => set({ container: e.target.value })} error={error} />
        <TextField label="Stack" name="project" value={form.project} placeholder="compose project" onChange={(e) => set({ project: e.target.value })} error={error} />
        <SelectField label="Stream" name="stream" value={form.stream} onChange={(e) => set({ stream: e.target.value })}>
          <option value="">Both</option>
          <option value="stdout">stdout</option>
          <option value="stderr">stderr</option>
        </SelectField>
        <TextField label="Text" name="q" value={form.q} placeholder="contains…" onChange={(e) => set({ q: e.target.value })} error={error} />
        <TextField label="Since" name="since" type="datetime-local" value={form.since} onChange={(e) => set({ since: e.target.value })} error={error} />
        <TextField label="Until" name="until" type="datetime-local" value={form.until} onChange={(e) => set({ until: e.target.value })} error={error} />
        <fieldset className="levels">
          <legend>Level</legend>
          {LEVELS.map((level) => (
            <label key={level}>
              <input
                type="checkbox"
                name={`level-${level}`}
                checked={form.levels.includes(level)}
                onChange={(e) => set({ levels: e.target.checked ? [...form.levels, level] : form.levels.filter((l) => l !== level) })}
              />{' '}
              {level === 'none' ? 'no level' : level}
            </label>
          ))}
        </fieldset>
        <div className="filter-buttons">
          <button type="submit" className="btn btn-primary">
            Apply
          </button>
        </div>
      </form>

      <FormError error={error} />
      {liveNote && <Notice kind="warning">{liveNote}</Notice>}
      <Gaps gaps={gaps} nodeName={nodeName} />
      {volume && <VolumeChart volume={volume} />}

      {loading ? (
        <p className="muted">Loading…</p>
      ) : lines.length === 0 ? (
        <p className="muted" data-testid="no-lines">
          No lines match. Nodes send their containers' logs as they are written.
        </p>
      ) : (
        <table className="log-table">
          <thead>
            <tr>
              <th>Time</th>
              <th>Node</th>
              <th>Container</th>
              <th>Level</th>
              <th>Line</th>
            </tr>
          </thead>
          <tbody>
            {lines.map((l) => (
              <tr key={lineKey(l)} data-testid="log-line" className={l.stream === 'stderr' ? 'stderr' : undefined}>
                <td className="nowrap">{formatTime(l.time)}</td>
                <td>{nodeName(l.agent_id)}</td>
                <td title={l.container_id}>
                  {l.container_name}
                  {l.compose_project ? <span className="muted"> ({l.compose_project})</span> : null}
                </td>
                <td>{levelBadge(l.level)}</td>
                <td className="log-text">{highlighted(l.line, filters.q)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {cursor && !live && (
        <button type="button" className="btn" onClick={() => void loadOlder()} data-testid="load-older">
          Load older
        </button>
      )}
    </div>
  );
}
