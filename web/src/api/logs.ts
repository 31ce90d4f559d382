// The organisation's stored logs: pages, volume per interval, the CSV export, the live socket
// and the retention (GET/PUT /api/v1/logs…).

import { request, requestBlob, type Query } from './client';
import type { LogPageDto, LogRetentionDto, LogVolumeDto } from './types';

/** The filters every logs endpoint takes (empty ones are left out). */
export interface LogFilters {
  agent?: string;
  container?: string;
  project?: string;
  /** Comma-separated: error, warn, info, debug, none. */
  level?: string;
  stream?: string;
  q?: string;
  since?: string;
  until?: string;
}

export const logsApi = {
  page: (f: LogFilters, extra: { cursor?: string; order?: 'newest' | 'oldest'; limit?: number } = {}) =>
    request<LogPageDto>('GET', '/logs', { query: { ...f, ...extra } as Query }),
  volume: (f: LogFilters, interval: number) =>
    request<LogVolumeDto>('GET', '/logs/volume', { query: { ...f, interval } as Query }),
  exportCsv: (f: LogFilters) => requestBlob('/logs/export.csv', { ...f } as Query),
  retention: () => request<LogRetentionDto>('GET', '/logs/retention'),
  setRetention: (retention_days: number | null) =>
    request<LogRetentionDto>('PUT', '/logs/retention', {
      body: { retention_days, default_days: 0, effective_days: 0 },
    }),
};

/** The live socket's path (give it to `socketUrl` with the filters as its query). */
export const LOGS_STREAM_PATH = '/logs/stream';
