// The nodes' health: state and score per node, the database and host process (operators), and
// a node's samples over time (GET /api/v1/health…).

import { request } from './client';
import type { HealthDto, NodeSamplesDto } from './types';

export const healthApi = {
  health: () => request<HealthDto>('GET', '/health'),
  samples: (agent: string, since: string, until: string) =>
    request<NodeSamplesDto>('GET', `/health/nodes/${encodeURIComponent(agent)}/samples`, { query: { since, until } }),
};
