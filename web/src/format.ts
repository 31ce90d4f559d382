const pad = (n: number) => String(n).padStart(2, '0');

/** A compact local date-time (YYYY-MM-DD HH:MM:SS) for tables; put the RFC 3339 value in a title. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** `user:0f0e…-uuid` → `user:0f0e1d2c…`; other targets unchanged. */
export function shortTarget(target: string): string {
  const m = /^([a-z_]+):([0-9a-f]{8})-[0-9a-f-]{27}$/i.exec(target);
  return m ? `${m[1]}:${m[2]}…` : target;
}

/** `<input type="datetime-local">` value (local time) to RFC 3339 UTC, or undefined when empty. */
export function localInputToRfc3339(value: string): string | undefined {
  if (!value) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** "Chrome 156 on Linux" from a User-Agent header; the raw value (shortened) for anything else. */
export function describeUserAgent(ua: string): string {
  if (!ua) return 'unknown';
  const names: Record<string, string> = { Edg: 'Edge', OPR: 'Opera', 'Mac OS X': 'macOS', CrOS: 'ChromeOS' };
  let name: string | undefined;
  let version: string | undefined;
  const m = /\b(Edg|OPR|Firefox|HeadlessChrome|Chrome|curl)\/(\d+)/.exec(ua);
  if (m) {
    name = m[1];
    version = m[2];
  } else if (/Safari\//.test(ua)) {
    name = 'Safari';
    version = /Version\/(\d+)/.exec(ua)?.[1];
  }
  if (!name) return ua.length > 60 ? `${ua.slice(0, 57)}…` : ua;
  const os = /(Windows|Android|iPhone|iPad|Mac OS X|CrOS|Linux)/.exec(ua)?.[1];
  const label = [names[name] ?? name, version].filter(Boolean).join(' ');
  return os ? `${label} on ${names[os] ?? os}` : label;
}

const MIB = 1024 * 1024;

/** Bytes as MiB with one decimal ("12.3 MiB"); "—" when unknown. */
export function formatMiB(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—';
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

/** A CPU share in percent ("3.2 %"); "—" when unknown. */
export function formatPercent(p: number | null | undefined): string {
  if (p === null || p === undefined || !Number.isFinite(p)) return '—';
  return `${p.toFixed(1)} %`;
}

/** A published port as Docker prints it: `127.0.0.1:8080→80/tcp`, `[::]:8080→80/tcp`, `80/tcp`. */
export function formatPort(p: { private_port: number; public_port: number | null; ip: string | null; protocol: string }): string {
  const inner = `${p.private_port}/${p.protocol}`;
  if (p.public_port === null || p.public_port === undefined) return inner;
  const host = p.ip ? (p.ip.includes(':') ? `[${p.ip}]` : p.ip) : '';
  return `${host ? `${host}:` : ''}${p.public_port}→${inner}`;
}

/** The distinct formatted ports of a container, in order. */
export function formatPorts(ports: Parameters<typeof formatPort>[0][]): string[] {
  return [...new Set(ports.map(formatPort))];
}

/** Local wall-clock time of an RFC 3339 value with milliseconds (HH:MM:SS.mmm), for log lines. */
export function formatClock(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** "3 s ago", "5 min ago", "2 h ago", or the date for anything older than a day. */
export function formatAgo(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return formatTime(iso);
}
