// The Terminal tab: xterm.js on the exec WebSocket. Keystrokes go out as
// {"type":"input"} text frames and size changes as {"type":"resize"}; the process's output comes
// back as binary frames; one {"type":"exit"} or {"type":"error"} text frame ends the session.
// Loaded lazily (xterm.js is the largest dependency of the dashboard).

import { useEffect, useRef, useState, type FormEvent } from 'react';
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';
import { freshAccessToken, socketProtocols, socketUrl, toApiError } from '../../api/client';
import { containerSockets, type ExecClientFrame, type ExecServerFrame } from '../../api/containers';

type Status = 'disconnected' | 'connecting' | 'connected' | 'exited' | 'error';

/** What the status line and its `data-state` say: the connection, whatever ended it. */
const CONNECTION: Record<Status, 'connecting' | 'connected' | 'disconnected'> = {
  disconnected: 'disconnected',
  connecting: 'connecting',
  connected: 'connected',
  exited: 'disconnected',
  error: 'disconnected',
};

function statusText(status: Status, exitCode: number | null): string {
  switch (status) {
    case 'connecting':
      return 'Connecting…';
    case 'connected':
      return 'Connected';
    case 'exited':
      return `Disconnected (process exited with code ${exitCode ?? '?'})`;
    case 'error':
      return 'Disconnected (error)';
    case 'disconnected':
      return 'Disconnected';
  }
}

export function TerminalView({
  agentId,
  cid,
  canConnect,
  active,
  running,
}: {
  agentId: string;
  cid: string;
  canConnect: boolean;
  /** The tab is visible (a hidden terminal cannot be measured, so it is fitted when shown). */
  active: boolean;
  /** The container is running (exec needs a running container). */
  running: boolean;
}) {
  const host = useRef<HTMLDivElement>(null);
  const term = useRef<Terminal | null>(null);
  const fit = useRef<FitAddon | null>(null);
  const ws = useRef<WebSocket | null>(null);
  const [command, setCommand] = useState('/bin/sh');
  const [status, setStatus] = useState<Status>('disconnected');
  const [exitCode, setExitCode] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);

  // ---- the terminal itself (one per mount) ---------------------------------------

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const t = new Terminal({
      cursorBlink: true,
      convertEol: false,
      fontFamily: "ui-monospace, 'SFMono-Regular', Menlo, Consolas, 'Liberation Mono', monospace",
      fontSize: 13,
      scrollback: 5000,
      theme: { background: '#0f1216', foreground: '#e4e7eb', cursor: '#7ea6f5', selectionBackground: '#2c3e66' },
    });
    const f = new FitAddon();
    t.loadAddon(f);
    t.open(el);
    term.current = t;
    fit.current = f;
    safeFit(f);

    const input = t.onData((data) => send({ type: 'input', data }));
    const resize = t.onResize(({ cols, rows }) => send({ type: 'resize', cols, rows }));
    const onWindowResize = () => safeFit(f);
    window.addEventListener('resize', onWindowResize);
    const observer = new ResizeObserver(() => safeFit(f));
    observer.observe(el);

    return () => {
      observer.disconnect();
      window.removeEventListener('resize', onWindowResize);
      input.dispose();
      resize.dispose();
      closeSocket();
      t.dispose();
      term.current = null;
      fit.current = null;
    };
  }, []);

  // Refit when the tab becomes visible again.
  useEffect(() => {
    if (active && fit.current) safeFit(fit.current);
  }, [active]);

  function send(frame: ExecClientFrame) {
    const s = ws.current;
    if (s && s.readyState === WebSocket.OPEN) s.send(JSON.stringify(frame));
  }

  function closeSocket() {
    const s = ws.current;
    ws.current = null;
    if (s) {
      s.onopen = null;
      s.onmessage = null;
      s.onclose = null;
      s.onerror = null;
      if (s.readyState === WebSocket.CONNECTING || s.readyState === WebSocket.OPEN) s.close(1000);
    }
  }

  // ---- the session ---------------------------------------------------------------

  async function connect(e?: FormEvent) {
    e?.preventDefault();
    const t = term.current;
    const f = fit.current;
    if (!t || !f) return;
    closeSocket();
    setError(null);
    setExitCode(null);
    setStatus('connecting');
    t.reset();
    safeFit(f);

    let token: string;
    try {
      token = await freshAccessToken();
    } catch (err) {
      setError(toApiError(err).message);
      setStatus('error');
      return;
    }

    const url = socketUrl(containerSockets.exec(agentId, cid), {
      command: command.trim() || '/bin/sh',
      cols: t.cols,
      rows: t.rows,
    });
    const s = new WebSocket(url, socketProtocols(token));
    s.binaryType = 'arraybuffer';
    ws.current = s;
    let opened = false;
    let ended = false;

    s.onopen = () => {
      opened = true;
      setStatus('connected');
      t.focus();
      // The size may have changed while connecting.
      send({ type: 'resize', cols: t.cols, rows: t.rows });
    };
    s.onmessage = (ev: MessageEvent) => {
      if (ev.data instanceof ArrayBuffer) {
        t.write(new Uint8Array(ev.data));
        return;
      }
      if (typeof ev.data !== 'string') return;
      let frame: ExecServerFrame;
      try {
        frame = JSON.parse(ev.data) as ExecServerFrame;
      } catch {
        t.write(ev.data);
        return;
      }
      if (frame.type === 'exit') {
        ended = true;
        setExitCode(frame.exit_code);
        setStatus('exited');
        t.write(`\r\n\x1b[2m[process exited with code ${frame.exit_code}]\x1b[0m\r\n`);
      } else if (frame.type === 'warning') {
        t.write(`\x1b[33m[policy warning: ${frame.message}]\x1b[0m\r\n`);
      } else if (frame.type === 'error') {
        ended = true;
        setError(frame.message);
        setStatus('error');
        t.write(`\r\n\x1b[31m[error: ${frame.message}]\x1b[0m\r\n`);
      }
    };
    s.onclose = (ev: CloseEvent) => {
      if (ws.current === s) ws.current = null;
      if (ended) return;
      if (!opened) {
        setError(
          ev.reason ||
            'Could not open the terminal. The node may be offline, the container stopped, or your role may not allow exec.',
        );
        setStatus('error');
        return;
      }
      t.write(`\r\n\x1b[2m[disconnected${ev.reason ? `: ${ev.reason}` : ''}]\x1b[0m\r\n`);
      setStatus('disconnected');
    };
  }

  function disconnect() {
    closeSocket();
    term.current?.write('\r\n\x1b[2m[disconnected]\x1b[0m\r\n');
    setStatus('disconnected');
  }

  const live = status === 'connecting' || status === 'connected';

  return (
    <div className="terminal-tab">
      <form className="terminal-toolbar" onSubmit={(e) => void connect(e)}>
        {canConnect && (
          <>
            <label htmlFor="terminal-command">Command</label>
            <input
              id="terminal-command"
              value={command}
              onChange={(e) => setCommand(e.target.value)}
              disabled={live}
              spellCheck={false}
              autoComplete="off"
              data-testid="terminal-command"
            />
            {live ? (
              <button type="button" className="btn btn-small" onClick={disconnect} data-testid="terminal-disconnect">
                Disconnect
              </button>
            ) : (
              <button type="submit" className="btn btn-small btn-primary" data-testid="terminal-connect">
                Connect
              </button>
            )}
          </>
        )}
        <span
          className={`terminal-status terminal-status-${status}`}
          data-testid="terminal-status"
          data-state={CONNECTION[status]}
          data-exit-code={status === 'exited' && exitCode !== null ? exitCode : undefined}
          role="status"
        >
          {statusText(status, exitCode)}
        </span>
      </form>
      {!canConnect && <p className="muted">Opening a terminal needs the admin role (a shell reads what only admins may reveal).</p>}
      {canConnect && !running && status === 'disconnected' && (
        <p className="hint">The container is not running; exec needs a running container.</p>
      )}
      {error && (
        <div className="alert alert-error" role="alert" data-testid="terminal-error">
          {error}
        </div>
      )}
      <div className="terminal-host" ref={host} data-testid="terminal" />
    </div>
  );
}

/** Fit unless the element is hidden (then xterm would compute a 0×0 or NaN size). */
function safeFit(f: FitAddon) {
  const dims = f.proposeDimensions();
  if (!dims || !Number.isFinite(dims.cols) || !Number.isFinite(dims.rows) || dims.cols < 2 || dims.rows < 2) return;
  try {
    f.fit();
  } catch {
    // not measurable yet
  }
}
