// The Logs tab: pages of a container's log (newest first loaded, "Load older" walks back with
// the page's cursor), a search and a stream filter that re-fetch, and "Follow", which streams
// new lines. Two sources: the host's store (default: the history the node's spool delivered,
// kept past the container's removal and Docker's log rotation, followed through
// /logs/stream) and Docker's own log of the container on the node (for nodes that do not send
// logs, or lines not delivered yet).

import { useCallback, useEffect, useLayoutEffect, useRef, useState, type FormEvent } from 'react';
import { ApiError, freshAccessToken, socketProtocols, socketUrl, toApiError } from '../../api/client';
import { containerSockets, containersApi, type LogLevel, type LogLine, type LogStream } from '../../api/containers';
import { LOGS_STREAM_PATH, logsApi } from '../../api/logs';
import type { LogLineDto } from '../../api/types';
import { Badge, FormError } from '../../components/ui';
import { formatClock } from '../../format';

const PAGE = 200;
/** Lines kept in the view; the oldest are dropped past this. */
const MAX_LINES = 5000;
/** History the follow socket sends first (overlap with the loaded page is skipped). */
const FOLLOW_TAIL = 100;
const SEARCH_DEBOUNCE_MS = 400;

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;

const lineKey = (l: LogLine) => `${l.time}|${l.stream}|${l.message}`;

type FollowState = 'off' | 'connecting' | 'live';
type Source = 'stored' | 'docker';

const fromStore = (l: LogLineDto): LogLine => ({
  time: l.time,
  stream: l.stream as LogStream,
  message: l.line,
  level: (l.level ?? null) as LogLevel | null,
});

/** A page of the container's log from `source`, oldest line first. */
async function fetchPage(source: Source, agentId: string, cid: string, q: string, stream: LogStream | '', cursor?: string) {
  if (source === 'docker') {
    const page = await containersApi.logs(agentId, cid, { tail: PAGE, cursor, q: q || undefined, stream: stream || undefined });
    return { lines: page.lines, next: page.next_cursor ?? null };
  }
  const page = await logsApi.page({ agent: agentId, container: cid, q: q || undefined, stream: stream || undefined }, { limit: PAGE, cursor });
  return { lines: page.items.map(fromStore).reverse(), next: page.next_cursor ?? null };
}

export function LogsView({ agentId, cid, canFollow }: { agentId: string; cid: string; canFollow: boolean }) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [qInput, setQInput] = useState('');
  const [q, setQ] = useState('');
  const [stream, setStream] = useState<LogStream | ''>('');
  const [source, setSource] = useState<Source>('stored');
  const [loading, setLoading] = useState(true);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [follow, setFollow] = useState(false);
  const [followState, setFollowState] = useState<FollowState>('off');
  const [followNote, setFollowNote] = useState<string | null>(null);

  const seq = useRef(0);
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const anchor = useRef<{ height: number; top: number } | null>(null);
  const linesRef = useRef(lines);
  linesRef.current = lines;
  const filterRef = useRef({ q, stream });
  filterRef.current = { q, stream };

  // ---- pages ------------------------------------------------------------------

  const loadNewest = useCallback(async () => {
    const mine = ++seq.current;
    setLoading(true);
    setError(null);
    try {
      const page = await fetchPage(source, agentId, cid, q, stream);
      if (mine !== seq.current) return;
      stick.current = true;
      setLines(page.lines);
      setCursor(page.next);
    } catch (e) {
      if (mine === seq.current) setError(toApiError(e));
    } finally {
      if (mine === seq.current) setLoading(false);
    }
  }, [agentId, cid, q, stream, source]);

  useEffect(() => {
    void loadNewest();
  }, [loadNewest]);

  // Typing searches after a pause; Enter searches at once.
  useEffect(() => {
    const t = window.setTimeout(() => setQ(qInput.trim()), SEARCH_DEBOUNCE_MS);
    return () => window.clearTimeout(t);
  }, [qInput]);

  function submitSearch(e: FormEvent) {
    e.preventDefault();
    const next = qInput.trim();
    if (next === q) void loadNewest();
    else setQ(next);
  }

  async function loadOlder() {
    if (!cursor) return;
    const mine = seq.current;
    setLoadingOlder(true);
    setError(null);
    try {
      const page = await fetchPage(source, agentId, cid, q, stream, cursor);
      if (mine !== seq.current) return; // the filters changed meanwhile
      const el = box.current;
      anchor.current = el ? { height: el.scrollHeight, top: el.scrollTop } : null;
      setLines((prev) => [...page.lines, ...prev]);
      setCursor(page.next);
    } catch (e) {
      setError(toApiError(e));
    } finally {
      setLoadingOlder(false);
    }
  }

  // ---- scrolling --------------------------------------------------------------

  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    if (anchor.current) {
      // Older lines were put on top: keep the lines in view where they were.
      el.scrollTop = el.scrollHeight - anchor.current.height + anchor.current.top;
      anchor.current = null;
    } else if (stick.current) {
      el.scrollTop = el.scrollHeight;
    }
  }, [lines]);

  function onScroll() {
    const el = box.current;
    if (el) stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
  }

  // ---- follow -----------------------------------------------------------------

  useEffect(() => {
    if (!follow) return;
    let cancelled = false;
    let ws: WebSocket | null = null;
    let buffer: LogLine[] = [];
    // Lines already on screen: the socket's history may repeat them.
    const seen = new Set(linesRef.current.map(lineKey));

    const flush = () => {
      if (buffer.length === 0) return;
      const add = buffer;
      buffer = [];
      if (linesRef.current.length + add.length > MAX_LINES) setCursor(null); // the oldest are dropped: no paging back
      setLines((prev) => {
        const all = prev.concat(add);
        return all.length > MAX_LINES ? all.slice(all.length - MAX_LINES) : all;
      });
    };
    const timer = window.setInterval(flush, 100);

    setFollowState('connecting');
    setFollowNote(null);
    stick.current = true;
    freshAccessToken()
      .then((token) => {
        if (cancelled) return;
        const url =
          source === 'docker'
            ? socketUrl(containerSockets.logs(agentId, cid), { tail: FOLLOW_TAIL })
            : socketUrl(LOGS_STREAM_PATH, { agent: agentId, container: cid });
        ws = new WebSocket(url, socketProtocols(token));
        ws.onopen = () => {
          if (!cancelled) setFollowState('live');
        };
        const take = (line: LogLine) => {
          if (typeof line.message !== 'string' || seen.has(lineKey(line))) return;
          const f = filterRef.current;
          if (f.stream && line.stream !== f.stream) return;
          if (f.q && !line.message.toLowerCase().includes(f.q.toLowerCase())) return;
          buffer.push(line);
        };
        ws.onmessage = (ev: MessageEvent) => {
          if (typeof ev.data !== 'string') return;
          try {
            if (source === 'docker') {
              take(JSON.parse(ev.data) as LogLine);
            } else {
              // The store's stream: batches of lines as they are stored.
              const msg = JSON.parse(ev.data) as { lines?: LogLineDto[]; lagged?: number };
              for (const l of msg.lines ?? []) take(fromStore(l));
              if (msg.lagged) setFollowNote(`Fell behind and skipped ${msg.lagged} batches; they are in the history.`);
            }
          } catch {
            // not a line
          }
        };
        ws.onclose = (ev: CloseEvent) => {
          if (cancelled) return;
          flush();
          setFollowNote(
            ev.code === 1000
              ? 'The log stream ended.'
              : `The log stream closed${ev.reason ? `: ${ev.reason}` : ev.code === 1006 ? ' (connection lost or refused)' : ` (code ${ev.code})`}.`,
          );
          setFollow(false);
        };
      })
      .catch((e: unknown) => {
        if (cancelled) return;
        setError(toApiError(e));
        setFollow(false);
      });

    return () => {
      cancelled = true;
      window.clearInterval(timer);
      flush();
      if (ws) {
        ws.onclose = null;
        ws.onmessage = null;
        ws.close(1000);
      }
      setFollowState('off');
    };
  }, [follow, agentId, cid, source]);

  // ---- view ---------------------------------------------------------------------

  return (
    <div className="logs" data-testid="logs">
      <div className="logs-toolbar">
        <form className="logs-search" onSubmit={submitSearch} role="search">
          <label htmlFor="log-search" className="visually-hidden">
            Search the log
          </label>
          <input
            id="log-search"
            type="search"
            placeholder="Search…"
            value={qInput}
            onChange={(e) => setQInput(e.target.value)}
            data-testid="log-search"
          />
          <label htmlFor="log-stream" className="visually-hidden">
            Stream
          </label>
          <select id="log-stream" value={stream} onChange={(e) => setStream(e.target.value as LogStream | '')} data-testid="log-stream">
            <option value="">stdout + stderr</option>
            <option value="stdout">stdout</option>
            <option value="stderr">stderr</option>
          </select>
          <label htmlFor="log-source" className="visually-hidden">
            Source
          </label>
          <select id="log-source" value={source} onChange={(e) => setSource(e.target.value as Source)} data-testid="log-source">
            <option value="stored">Stored history</option>
            <option value="docker">Docker's log</option>
          </select>
          <button type="submit" className="btn btn-small">
            Search
          </button>
        </form>
        <div className="logs-follow">
          {canFollow && (
            <button
              type="button"
              className={`btn btn-small${follow ? ' btn-primary' : ''}`}
              aria-pressed={follow}
              onClick={() => setFollow((f) => !f)}
              data-testid="log-follow"
            >
              {follow ? 'Following' : 'Follow'}
            </button>
          )}
          <span className="muted small" data-testid="log-follow-status" data-state={followState}>
            {followState === 'connecting' ? 'Connecting…' : followState === 'live' ? 'Live' : (followNote ?? '')}
          </span>
        </div>
      </div>
      <FormError error={error} />
      <div className="log-box" ref={box} onScroll={onScroll} data-testid="log-lines" aria-busy={loading} tabIndex={0} aria-label="Log lines">
        <div className="log-older">
          {cursor ? (
            <button type="button" className="btn btn-small" onClick={() => void loadOlder()} disabled={loadingOlder} data-testid="log-load-older">
              {loadingOlder ? 'Loading…' : 'Load older'}
            </button>
          ) : (
            !loading && lines.length > 0 && <span className="muted small">Start of the log.</span>
          )}
        </div>
        {lines.map((l, i) => (
          <div key={i} className={`log-line log-${l.stream}`} data-testid="log-line" data-stream={l.stream} data-level={l.level ?? ''}>
            <span className="log-time" title={l.time}>
              {formatClock(l.time)}
            </span>
            <span className={`log-stream log-stream-${l.stream}`} title={l.stream}>
              {l.stream === 'stderr' ? 'err' : 'out'}
            </span>
            <span className="log-level">{l.level && <LevelBadge level={l.level} />}</span>
            <span className="log-msg">{l.message.replace(ANSI, '')}</span>
          </div>
        ))}
        {!loading && lines.length === 0 && <p className="muted log-empty">{q || stream ? 'No lines match.' : 'The log is empty.'}</p>}
        {loading && lines.length === 0 && <p className="muted log-empty">Loading…</p>}
      </div>
    </div>
  );
}

function LevelBadge({ level }: { level: string }) {
  const kind = level === 'error' ? 'bad' : level === 'warn' ? 'warn' : level === 'info' ? 'ok' : 'neutral';
  return <Badge kind={kind}>{level}</Badge>;
}
