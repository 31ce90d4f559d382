// A settings form generated from a plugin's JSON Schema (an object of simple
// properties). Strings, numbers, booleans, lists of strings (one per line) and
// string maps ("Name: value" per line). `writeOnly` properties are secrets: a
// password input, empty on edit meaning "keep the stored value".

import type { ApiError } from '../api/client';
import type { JsonSchema, Settings } from '../api/alerts';
import { CheckboxField, TextField } from './ui';

function kind(s: JsonSchema): 'string' | 'number' | 'boolean' | 'list' | 'map' | 'code' {
  const t = Array.isArray(s.type) ? s.type[0] : s.type;
  if (t === 'string' && s.format === 'rego') return 'code';
  if (t === 'boolean') return 'boolean';
  if (t === 'number' || t === 'integer') return 'number';
  if (t === 'array') return 'list';
  if (t === 'object') return 'map';
  return 'string';
}

/** The form's text state → settings for the API (empty optional fields left out). */
export function settingsFromForm(schema: JsonSchema, values: Record<string, string>, secretsSet: string[] = []): Settings {
  const out: Settings = {};
  for (const [name, prop] of Object.entries(schema.properties ?? {})) {
    const raw = values[name] ?? '';
    if (raw.trim() === '' && kind(prop) !== 'boolean') {
      // An empty secret on edit keeps the stored one (left out of the request).
      if (prop.writeOnly && secretsSet.includes(name)) continue;
      continue;
    }
    switch (kind(prop)) {
      case 'boolean':
        out[name] = raw === 'true';
        break;
      case 'number':
        out[name] = Number(raw);
        break;
      case 'list':
        out[name] = raw
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean);
        break;
      case 'map': {
        const map: Record<string, string> = {};
        for (const line of raw.split('\n')) {
          const at = line.indexOf(':');
          if (at > 0) map[line.slice(0, at).trim()] = line.slice(at + 1).trim();
        }
        out[name] = map;
        break;
      }
      default:
        out[name] = raw;
    }
  }
  return out;
}

/** Stored settings → the form's text state. */
export function formFromSettings(schema: JsonSchema, settings: Settings): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, prop] of Object.entries(schema.properties ?? {})) {
    const v = settings[name] ?? prop.default;
    if (v === undefined || v === null) continue;
    switch (kind(prop)) {
      case 'list':
        out[name] = Array.isArray(v) ? v.join('\n') : '';
        break;
      case 'map':
        out[name] = Object.entries(v as Record<string, string>)
          .map(([k, val]) => `${k}: ${val}`)
          .join('\n');
        break;
      default:
        out[name] = String(v);
    }
  }
  return out;
}

export function SchemaForm({
  schema,
  values,
  onChange,
  error,
  secretsSet = [],
  prefix = 'settings',
  legend = 'Settings',
}: {
  schema: JsonSchema;
  values: Record<string, string>;
  onChange: (values: Record<string, string>) => void;
  error: ApiError | null;
  secretsSet?: string[];
  /** The request field the values go to (errors name `<prefix>.<property>`). */
  prefix?: string;
  legend?: string;
}) {
  const required = new Set(schema.required ?? []);
  const set = (name: string, v: string) => onChange({ ...values, [name]: v });
  return (
    <fieldset className="schema-form" data-testid="settings-form">
      <legend>{legend}</legend>
      {Object.entries(schema.properties ?? {}).map(([name, prop]) => {
        const field = `${prefix}.${name}`;
        const label = `${prop.title ?? name}${required.has(name) ? ' *' : ''}`;
        const invalid = !!error && (error.field === field || error.field?.startsWith(`${field}.`));
        switch (kind(prop)) {
          case 'boolean':
            return (
              <CheckboxField key={name} label={label} name={field} checked={values[name] === 'true'} onChange={(v) => set(name, String(v))} error={error} />
            );
          case 'list':
          case 'map':
          case 'code':
            return (
              <div key={name} className={`field${invalid ? ' field-invalid' : ''}`}>
                <label htmlFor={`sf-${name}`}>{label}</label>
                <textarea
                  id={`sf-${name}`}
                  name={field}
                  rows={kind(prop) === 'code' ? 14 : 3}
                  spellCheck={kind(prop) === 'code' ? false : undefined}
                  className={kind(prop) === 'code' ? 'code-input' : undefined}
                  value={values[name] ?? ''}
                  placeholder={prop.writeOnly && secretsSet.includes(name) ? 'unchanged (stored, write-only)' : undefined}
                  aria-invalid={invalid || undefined}
                  onChange={(e) => set(name, e.target.value)}
                />
                <small className="hint">
                  {prop.description ? `${prop.description} ` : ''}
                  {kind(prop) === 'list' ? 'One per line.' : kind(prop) === 'map' ? 'One “Name: value” per line.' : ''}
                </small>
              </div>
            );
          default:
            return (
              <TextField
                key={name}
                label={label}
                name={field}
                type={prop.writeOnly ? 'password' : kind(prop) === 'number' ? 'number' : 'text'}
                autoComplete={prop.writeOnly ? 'new-password' : 'off'}
                value={values[name] ?? ''}
                placeholder={prop.writeOnly && secretsSet.includes(name) ? 'unchanged (stored, write-only)' : undefined}
                onChange={(e) => set(name, e.target.value)}
                hint={prop.description}
                error={invalid ? { ...error, field } as ApiError : error}
              />
            );
        }
      })}
    </fieldset>
  );
}
