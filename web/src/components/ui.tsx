// Small shared building blocks: form fields that highlight the API's `field`,
// error banners, a modal dialog on the native <dialog> element, a loader hook.

import {
  useCallback,
  useEffect,
  useId,
  useRef,
  useState,
  type InputHTMLAttributes,
  type ReactNode,
  type SelectHTMLAttributes,
} from 'react';
import { ApiError, toApiError } from '../api/client';

// ---- errors ---------------------------------------------------------------

/** The error message of a form; the field named by `error.field` is highlighted by the field itself. */
export function FormError({ error, id }: { error: ApiError | null; id?: string }) {
  if (!error) return null;
  return (
    <div className="alert alert-error" role="alert" id={id} data-testid="form-error">
      {error.message}
    </div>
  );
}

export function Notice({ children, kind = 'info' }: { children: ReactNode; kind?: 'info' | 'success' | 'warning' }) {
  return (
    <div className={`alert alert-${kind}`} role="status">
      {children}
    </div>
  );
}

// ---- fields ---------------------------------------------------------------

// A field named by `error.field` is highlighted (red border, aria-invalid);
// the message itself is in the form's FormError banner.

interface FieldProps extends Omit<InputHTMLAttributes<HTMLInputElement>, 'id' | 'name'> {
  label: string;
  /** The request field this input maps to; matched against ApiError.field. */
  name: string;
  error?: ApiError | null;
  hint?: ReactNode;
  id?: string;
}

export function TextField({ label, name, error, hint, id, className, ...input }: FieldProps) {
  const autoId = useId();
  const inputId = id ?? `${name}-${autoId}`;
  const hintId = `${inputId}-hint`;
  const invalid = !!error && error.field === name;
  return (
    <div className={`field${invalid ? ' field-invalid' : ''}${className ? ` ${className}` : ''}`}>
      <label htmlFor={inputId}>{label}</label>
      <input
        id={inputId}
        name={name}
        aria-invalid={invalid || undefined}
        aria-describedby={hint ? hintId : undefined}
        data-invalid={invalid || undefined}
        {...input}
      />
      {hint && (
        <small id={hintId} className="hint">
          {hint}
        </small>
      )}
    </div>
  );
}

interface SelectProps extends Omit<SelectHTMLAttributes<HTMLSelectElement>, 'id' | 'name'> {
  label: string;
  name: string;
  error?: ApiError | null;
  hint?: ReactNode;
  id?: string;
  children: ReactNode;
}

export function SelectField({ label, name, error, hint, id, children, ...select }: SelectProps) {
  const autoId = useId();
  const selectId = id ?? `${name}-${autoId}`;
  const hintId = `${selectId}-hint`;
  const invalid = !!error && error.field === name;
  return (
    <div className={`field${invalid ? ' field-invalid' : ''}`}>
      <label htmlFor={selectId}>{label}</label>
      <select id={selectId} name={name} aria-invalid={invalid || undefined} aria-describedby={hint ? hintId : undefined} {...select}>
        {children}
      </select>
      {hint && (
        <small id={hintId} className="hint">
          {hint}
        </small>
      )}
    </div>
  );
}

export function CheckboxField({
  label,
  name,
  checked,
  onChange,
  error,
}: {
  label: string;
  name: string;
  checked: boolean;
  onChange: (v: boolean) => void;
  error?: ApiError | null;
}) {
  const id = `${name}-${useId()}`;
  const invalid = !!error && error.field === name;
  return (
    <div className={`field field-check${invalid ? ' field-invalid' : ''}`}>
      <input
        id={id}
        name={name}
        type="checkbox"
        checked={checked}
        aria-invalid={invalid || undefined}
        onChange={(e) => onChange(e.target.checked)}
      />
      <label htmlFor={id}>{label}</label>
    </div>
  );
}

// ---- dialog ---------------------------------------------------------------

/** A modal on the native <dialog>: focus trap, Escape to close, backdrop. */
export function Dialog({
  title,
  open,
  onClose,
  children,
  testId,
}: {
  title: string;
  open: boolean;
  onClose: () => void;
  children: ReactNode;
  testId?: string;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();

  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);

  return (
    <dialog
      ref={ref}
      className="dialog"
      aria-labelledby={titleId}
      data-testid={testId}
      onClose={onClose}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      {open && (
        <>
          <header className="dialog-header">
            <h2 id={titleId}>{title}</h2>
            <button type="button" className="btn btn-ghost" aria-label="Close" onClick={onClose}>
              ×
            </button>
          </header>
          <div className="dialog-body">{children}</div>
        </>
      )}
    </dialog>
  );
}

/** A yes/no dialog for destructive actions; shows the API error if the action fails. */
export function ConfirmDialog({
  title,
  message,
  confirmLabel,
  open,
  onClose,
  onConfirm,
}: {
  title: string;
  message: ReactNode;
  confirmLabel: string;
  open: boolean;
  onClose: () => void;
  onConfirm: () => Promise<void>;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);

  useEffect(() => {
    if (open) setError(null);
  }, [open]);

  return (
    <Dialog title={title} open={open} onClose={onClose} testId="confirm-dialog">
      <p>{message}</p>
      <FormError error={error} />
      <div className="actions">
        <button type="button" className="btn" onClick={onClose} disabled={busy}>
          Cancel
        </button>
        <button
          type="button"
          className="btn btn-danger"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            setError(null);
            try {
              await onConfirm();
              onClose();
            } catch (e) {
              setError(toApiError(e));
            } finally {
              setBusy(false);
            }
          }}
        >
          {confirmLabel}
        </button>
      </div>
    </Dialog>
  );
}

// ---- misc -----------------------------------------------------------------

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [copied, setCopied] = useState(false);
  if (!navigator.clipboard) return null;
  return (
    <button
      type="button"
      className="btn btn-small"
      onClick={() => {
        void navigator.clipboard.writeText(text).then(() => {
          setCopied(true);
          window.setTimeout(() => setCopied(false), 1500);
        });
      }}
    >
      {copied ? 'Copied' : label}
    </button>
  );
}

export function Badge({ children, kind = 'neutral' }: { children: ReactNode; kind?: 'neutral' | 'ok' | 'warn' | 'bad' }) {
  return <span className={`badge badge-${kind}`}>{children}</span>;
}

export function PageHeader({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="page-header">
      <h1>{title}</h1>
      {children && <div className="page-actions">{children}</div>}
    </div>
  );
}

export interface Loaded<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
  reload: () => Promise<void>;
}

/** Load data on mount (and on `reload()`); keeps the previous data while reloading. */
export function useLoad<T>(load: () => Promise<T>): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const loadRef = useRef(load);
  loadRef.current = load;

  const reload = useCallback(async () => {
    setLoading(true);
    try {
      setData(await loadRef.current());
      setError(null);
    } catch (e) {
      setError(toApiError(e));
    } finally {
      setLoading(false);
    }
  }, []);

  useEffect(() => {
    void reload();
  }, [reload]);

  return { data, error, loading, reload };
}

export interface Polled<T> extends Loaded<T> {
  /** When the last successful load finished (ms since the epoch), or null. */
  loadedAt: number | null;
}

/**
 * Load data now and then every `intervalMs` (skipping ticks while the tab is hidden), keeping the
 * previous data on errors. A new `key` starts over with no data. Responses that arrive after a
 * newer request started are dropped, so a slow poll never overwrites a fresher answer.
 */
export function usePoll<T>(load: () => Promise<T>, intervalMs: number, key = ''): Polled<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const [loadedAt, setLoadedAt] = useState<number | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const seq = useRef(0);

  const reload = useCallback(async () => {
    const mine = ++seq.current;
    try {
      const d = await loadRef.current();
      if (mine !== seq.current) return;
      setData(d);
      setError(null);
      setLoadedAt(Date.now());
    } catch (e) {
      if (mine === seq.current) setError(toApiError(e));
    } finally {
      if (mine === seq.current) setLoading(false);
    }
  }, []);

  useEffect(() => {
    setData(null);
    setError(null);
    setLoading(true);
    setLoadedAt(null);
    let stopped = false;
    let timer: number | undefined;
    const tick = async () => {
      if (!document.hidden) await reload();
      if (!stopped) timer = window.setTimeout(() => void tick(), intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
      seq.current++;
    };
  }, [key, intervalMs, reload]);

  return { data, error, loading, reload, loadedAt };
}

/** `k=v` chips for a label map. */
export function LabelChips({ labels }: { labels: Record<string, string> | null | undefined }) {
  const entries = Object.entries(labels ?? {});
  if (entries.length === 0) return <span className="muted">—</span>;
  return (
    <span className="chips">
      {entries.map(([k, v]) => (
        <span key={k} className="chip" title={`${k}=${v}`}>
          {k}={v}
        </span>
      ))}
    </span>
  );
}

/**
 * Copy `text` to the clipboard. Without the async clipboard API (plain http, old browsers) or
 * when it refuses, select the text in `fallback` and try the legacy copy command; the text stays
 * selected either way, so Ctrl+C still works. Resolves to whether the copy is known to have worked.
 */
export async function copyText(text: string, fallback?: HTMLTextAreaElement | HTMLInputElement | null): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the selection fallback
  }
  if (!fallback) return false;
  fallback.focus();
  fallback.select();
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  }
}
