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
