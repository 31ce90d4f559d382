//! Policies (issue 18). The host keeps what must be trusted: before any policy engine (a
//! `policy-engine` plugin) sees a container, the host turns its Docker configuration into one
//! canonical form ([`normalise::EffectiveContainer`]), so that no spelling of the same thing —
//! `Binds` or `Mounts`, `User` `""`/`0`/`root`/`0:0`, `CAP_SYS_ADMIN` or `sys_admin`, `HostConfig`
//! or `hostconfig` — slips past a policy that refuses it.

pub mod guard;
pub mod normalise;
pub mod running;

pub use guard::{Context, Decision, PolicyGuard, decide};
pub use normalise::{EffectiveContainer, HostMount, MountKind, NormaliseError, normalise};
