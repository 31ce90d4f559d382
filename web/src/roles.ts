import type { Role } from './api/types';

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2, super_admin: 3 };

export const ROLE_LABELS: Record<Role, string> = {
  super_admin: 'Super admin',
  admin: 'Admin',
  operator: 'Operator',
  viewer: 'Viewer',
};

/** True when `role` has at least the privileges of `min`. Unknown roles get nothing. */
export function atLeast(role: string | undefined, min: Role): boolean {
  if (!role || !(role in RANK)) return false;
  return RANK[role as Role] >= RANK[min];
}

export function roleLabel(role: string): string {
  return ROLE_LABELS[role as Role] ?? role;
}
