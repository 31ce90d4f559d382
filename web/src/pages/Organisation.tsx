// The current organisation: its name, members (roles, removal), invitations (send, revoke, copy
// the link once) and deletion; and a new organisation where the edition allows it.

import { useState, type FormEvent } from 'react';
import { useNavigate } from 'react-router-dom';
import { ApiError, api, toApiError } from '../api/client';
import type { CreatedInvitation, InvitationDto, MemberDto, OrganizationDto } from '../api/types';
import { useAuth, useUser } from '../auth';
import { Badge, ConfirmDialog, CopyButton, Dialog, FormError, Notice, PageHeader, SelectField, TextField, useLoad } from '../components/ui';
import { formatTime } from '../format';
import { atLeast, roleLabel } from '../roles';

/** The host's own organisation (the data of a single-tenant install); it cannot be deleted. */
const DEFAULT_ORG_ID = '00000000-0000-0000-0000-000000000001';

/** Roles a membership can have; `super_admin` belongs to the host operator only. */
const MEMBER_ROLES = ['admin', 'operator', 'viewer'] as const;

export function OrganisationPage() {
  const user = useUser();
  const { orgs } = useAuth();
  const orgId = user.org_id ?? '';
  const org = orgs.find((o) => o.id === orgId) ?? null;
  const isAdmin = atLeast(user.role, 'admin');
  const [creating, setCreating] = useState(false);

  return (
    <>
      <PageHeader title={org ? `Organisation: ${org.name}` : 'Organisation'}>
        {user.can_create_organisations && (
          <button type="button" className="btn" onClick={() => setCreating(true)} data-testid="org-new">
            New organisation
          </button>
        )}
      </PageHeader>
      {org && isAdmin && <OrganisationSettings org={org} />}
      {org && <Members orgId={org.id} isAdmin={isAdmin} hostOperator={user.host_operator} />}
      {org && isAdmin && <Invitations orgId={org.id} myRole={user.role} />}
      {org && isAdmin && org.id !== DEFAULT_ORG_ID && <DeleteOrganisation org={org} />}
      <Dialog title="New organisation" open={creating} onClose={() => setCreating(false)} testId="org-create-dialog">
        <CreateOrganisationForm onCancel={() => setCreating(false)} />
      </Dialog>
    </>
  );
}

/** Makes an organisation and switches to it. */
export function CreateOrganisationForm({ onCancel }: { onCancel?: () => void }) {
  const { switchOrg } = useAuth();
  const navigate = useNavigate();
  const [name, setName] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const org = await api.createOrg(name.trim());
      await switchOrg(org.id);
      navigate('/onboarding');
    } catch (err) {
      setError(toApiError(err));
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit} data-testid="org-create-form">
      <FormError error={error} />
      <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required maxLength={100} error={error} autoFocus />
      <div className="actions">
        {onCancel && (
          <button type="button" className="btn" onClick={onCancel}>
            Cancel
          </button>
        )}
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Create organisation
        </button>
      </div>
    </form>
  );
}

function OrganisationSettings({ org }: { org: OrganizationDto }) {
  const { reloadOrgs } = useAuth();
  const [name, setName] = useState(org.name);
  const [error, setError] = useState<ApiError | null>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      await api.renameOrg(org.id, name.trim());
      await reloadOrgs();
      setSaved(true);
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card" aria-labelledby="org-settings-title">
      <h2 id="org-settings-title">Settings</h2>
      <form onSubmit={submit} data-testid="org-settings-form">
        <FormError error={error} />
        {saved && <Notice kind="success">Saved.</Notice>}
        <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required maxLength={100} error={error} />
        <div className="actions actions-left">
          <button type="submit" className="btn btn-primary" disabled={busy || name.trim() === org.name}>
            Rename
          </button>
        </div>
      </form>
    </section>
  );
}

function Members({ orgId, isAdmin, hostOperator }: { orgId: string; isAdmin: boolean; hostOperator: boolean }) {
  const me = useUser();
  const members = useLoad(() => api.members(orgId));
  const [error, setError] = useState<ApiError | null>(null);
  const [removing, setRemoving] = useState<MemberDto | null>(null);
  const [resetting, setResetting] = useState<MemberDto | null>(null);
  const [adding, setAdding] = useState(false);

  async function changeRole(m: MemberDto, role: string) {
    setError(null);
    try {
      await api.setMemberRole(orgId, m.user_id, role);
    } catch (err) {
      setError(toApiError(err));
    }
    await members.reload();
  }

  return (
    <section className="card" aria-labelledby="members-title">
      <div className="section-header">
        <h2 id="members-title">Members</h2>
        {hostOperator && (
          <button type="button" className="btn btn-small" onClick={() => setAdding(true)}>
            Add an existing account
          </button>
        )}
      </div>
      <FormError error={members.error ?? error} />
      <div className="table-wrap">
        <table data-testid="members-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {members.data?.map((m) => {
              const editable = isAdmin && m.role !== 'super_admin' && m.user_id !== me.id;
              return (
                <tr key={m.user_id}>
                  <td>
                    {m.name} {m.disabled && <Badge kind="bad">Disabled</Badge>}
                  </td>
                  <td>{m.email}</td>
                  <td>
                    {editable ? (
                      <select
                        aria-label={`Role of ${m.email}`}
                        value={m.role}
                        onChange={(e) => void changeRole(m, e.target.value)}
                        data-testid="member-role"
                      >
                        {MEMBER_ROLES.map((r) => (
                          <option key={r} value={r}>
                            {roleLabel(r)}
                          </option>
                        ))}
                      </select>
                    ) : (
                      roleLabel(m.role)
                    )}
                  </td>
                  <td className="actions-cell">
                    {editable && m.mfa_enabled && (
                      <button type="button" className="btn btn-small" onClick={() => setResetting(m)} aria-label={`Reset second factor of ${m.email}`}>
                        Reset 2FA
                      </button>
                    )}{' '}
                    {editable && (
                      <button type="button" className="btn btn-small btn-danger" onClick={() => setRemoving(m)} aria-label={`Remove ${m.email}`}>
                        Remove
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <ConfirmDialog
        title="Reset two-factor authentication"
        open={resetting !== null}
        onClose={() => setResetting(null)}
        confirmLabel="Reset"
        message={
          <>
            Turn off the authenticator and backup codes of <strong>{resetting?.email}</strong>? Their sessions end; a sign-in
            that requires a second factor has them set up a new one.
          </>
        }
        onConfirm={async () => {
          if (!resetting) return;
          await api.resetMemberMfa(orgId, resetting.user_id);
          await members.reload();
        }}
      />
      <ConfirmDialog
        title="Remove member"
        open={removing !== null}
        onClose={() => setRemoving(null)}
        confirmLabel="Remove member"
        message={
          <>
            Remove <strong>{removing?.email}</strong> from this organisation? Their API tokens here and the invitations they
            sent are revoked.
          </>
        }
        onConfirm={async () => {
          if (!removing) return;
          await api.removeMember(orgId, removing.user_id);
          await members.reload();
        }}
      />
      <Dialog title="Add an existing account" open={adding} onClose={() => setAdding(false)}>
        <AddMemberForm
          orgId={orgId}
          onDone={() => {
            setAdding(false);
            void members.reload();
          }}
          onCancel={() => setAdding(false)}
        />
      </Dialog>
    </section>
  );
}

function AddMemberForm({ orgId, onDone, onCancel }: { orgId: string; onDone: () => void; onCancel: () => void }) {
  const [email, setEmail] = useState('');
  const [role, setRole] = useState('viewer');
  const [error, setError] = useState<ApiError | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      await api.addMember(orgId, email.trim(), role);
      onDone();
    } catch (err) {
      setError(toApiError(err));
    }
  }

  return (
    <form onSubmit={submit}>
      <FormError error={error} />
      <TextField label="Email" name="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required error={error} />
      <SelectField label="Role" name="role" value={role} onChange={(e) => setRole(e.target.value)} error={error}>
        {MEMBER_ROLES.map((r) => (
          <option key={r} value={r}>
            {roleLabel(r)}
          </option>
        ))}
      </SelectField>
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary">
          Add member
        </button>
      </div>
    </form>
  );
}

function Invitations({ orgId, myRole }: { orgId: string; myRole: string }) {
  const invitations = useLoad(() => api.invitations(orgId));
  const [sent, setSent] = useState<CreatedInvitation | null>(null);
  const [revoking, setRevoking] = useState<InvitationDto | null>(null);
  const [email, setEmail] = useState('');
  const [role, setRole] = useState('viewer');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  // No invitation is worth more than its sender.
  const roles = MEMBER_ROLES.filter((r) => atLeast(myRole, r));

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setSent(await api.invite(orgId, email.trim(), role));
      setEmail('');
      await invitations.reload();
    } catch (err) {
      setError(toApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card" aria-labelledby="invitations-title">
      <h2 id="invitations-title">Invitations</h2>
      <form className="form-grid" onSubmit={submit} data-testid="invite-form" aria-label="Invite someone">
        <FormError error={error} />
        <TextField label="Email" name="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required error={error} />
        <SelectField label="Role" name="role" value={role} onChange={(e) => setRole(e.target.value)} error={error}>
          {roles.map((r) => (
            <option key={r} value={r}>
              {roleLabel(r)}
            </option>
          ))}
        </SelectField>
        <div className="actions actions-left">
          <button type="submit" className="btn btn-primary" disabled={busy}>
            Send invitation
          </button>
        </div>
      </form>
      {sent && (
        <div className="alert alert-success secret-box" role="status" data-testid="invitation-sent">
          <p>
            {sent.mailed ? (
              <>
                Invitation mailed to <strong>{sent.email}</strong>.
              </>
            ) : (
              <>
                The invitation for <strong>{sent.email}</strong> was not mailed ({sent.mail_error ?? 'no mail settings'}); send
                them this link yourself.
              </>
            )}{' '}
            The link is shown this once, works once and expires {formatTime(sent.expires_at)}.
          </p>
          <div className="secret-line">
            <code data-testid="invitation-link">{sent.accept_url}</code>
            <CopyButton text={sent.accept_url} label="Copy link" />
          </div>
          <button type="button" className="btn btn-small" onClick={() => setSent(null)}>
            Done
          </button>
        </div>
      )}
      <FormError error={invitations.error} />
      <div className="table-wrap">
        <table data-testid="invitations-table">
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Sent</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {invitations.data?.map((i) => (
              <tr key={i.id}>
                <td>{i.email}</td>
                <td>{roleLabel(i.role)}</td>
                <td title={i.created_at}>{formatTime(i.created_at)}</td>
                <td title={i.expires_at}>{formatTime(i.expires_at)}</td>
                <td className="actions-cell">
                  <button type="button" className="btn btn-small btn-danger" onClick={() => setRevoking(i)} aria-label={`Revoke the invitation of ${i.email}`}>
                    Revoke
                  </button>
                </td>
              </tr>
            ))}
            {invitations.data?.length === 0 && (
              <tr>
                <td colSpan={5} className="muted">
                  No open invitations.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <ConfirmDialog
        title="Revoke invitation"
        open={revoking !== null}
        onClose={() => setRevoking(null)}
        confirmLabel="Revoke invitation"
        message={
          <>
            Revoke the invitation of <strong>{revoking?.email}</strong>? Its link stops working.
          </>
        }
        onConfirm={async () => {
          if (!revoking) return;
          await api.revokeInvitation(orgId, revoking.id);
          await invitations.reload();
        }}
      />
    </section>
  );
}

function DeleteOrganisation({ org }: { org: OrganizationDto }) {
  const { reload } = useAuth();
  const navigate = useNavigate();
  const [open, setOpen] = useState(false);
  const [typed, setTyped] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.deleteOrg(org.id, typed);
      setOpen(false);
      navigate('/');
      await reload();
    } catch (err) {
      setError(toApiError(err));
      setBusy(false);
    }
  }

  return (
    <section className="card danger-zone" aria-labelledby="org-delete-title">
      <h2 id="org-delete-title">Delete the organisation</h2>
      <p className="muted">Revokes its agents and removes its nodes, proxy hosts, alerts, tokens, audit trail and members. This cannot be undone.</p>
      <button type="button" className="btn btn-danger" onClick={() => setOpen(true)}>
        Delete organisation
      </button>
      <Dialog title="Delete organisation" open={open} onClose={() => setOpen(false)} testId="org-delete-dialog">
        <form onSubmit={submit}>
          <FormError error={error} />
          <TextField
            label={`Type “${org.name}” to confirm`}
            name="confirm_name"
            value={typed}
            onChange={(e) => setTyped(e.target.value)}
            required
            autoComplete="off"
            error={error}
          />
          <div className="actions">
            <button type="button" className="btn" onClick={() => setOpen(false)}>
              Cancel
            </button>
            <button type="submit" className="btn btn-danger" disabled={busy || typed !== org.name}>
              Delete organisation
            </button>
          </div>
        </form>
      </Dialog>
    </section>
  );
}
