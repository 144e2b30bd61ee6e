//! virConnectListAllDomains' filter flags, shared by the list and the domstats calls. Each
//! group of flags (active, persistent, state, managed save, autostart, snapshot, checkpoint)
//! filters only when one of its bits is set; a domain must pass every group.

use super::domain::DomainStatus;
use super::protocol::DomainState;

pub const ACTIVE: u32 = 1 << 0;
pub const INACTIVE: u32 = 1 << 1;
pub const PERSISTENT: u32 = 1 << 2;
pub const TRANSIENT: u32 = 1 << 3;
pub const RUNNING: u32 = 1 << 4;
pub const PAUSED: u32 = 1 << 5;
pub const SHUTOFF: u32 = 1 << 6;
pub const OTHER: u32 = 1 << 7;
pub const MANAGEDSAVE: u32 = 1 << 8;
pub const NO_MANAGEDSAVE: u32 = 1 << 9;
pub const AUTOSTART: u32 = 1 << 10;
pub const NO_AUTOSTART: u32 = 1 << 11;
pub const HAS_SNAPSHOT: u32 = 1 << 12;
pub const NO_SNAPSHOT: u32 = 1 << 13;
pub const HAS_CHECKPOINT: u32 = 1 << 14;
pub const NO_CHECKPOINT: u32 = 1 << 15;
/// Every filter bit.
pub const ALL: u32 = (1 << 16) - 1;

/// What the filters ask about a domain beyond its status: this VMM's domain never
/// autostarts, and has no managed save, snapshot or checkpoint.
const HAS_AUTOSTART: bool = false;
const HAS_MANAGED_SAVE: bool = false;
const HAS_SNAPSHOTS: bool = false;
const HAS_CHECKPOINTS: bool = false;

/// Whether a group passes: `yes` set asks for `fact`, `no` set for its opposite.
fn group(flags: u32, yes: u32, no: u32, fact: bool) -> bool {
    match (flags & yes != 0, flags & no != 0) {
        (false, false) => true,
        (want_yes, want_no) => (want_yes && fact) || (want_no && !fact),
    }
}

pub fn matches(status: &DomainStatus, flags: u32) -> bool {
    let state_flags = RUNNING | PAUSED | SHUTOFF | OTHER;
    let state_ok = flags & state_flags == 0
        || match status.state {
            DomainState::Running => flags & RUNNING != 0,
            DomainState::Paused => flags & PAUSED != 0,
            DomainState::Shutoff => flags & SHUTOFF != 0,
            _ => flags & OTHER != 0,
        };
    state_ok
        && group(flags, ACTIVE, INACTIVE, status.is_active())
        && group(flags, PERSISTENT, TRANSIENT, status.persistent)
        && group(flags, MANAGEDSAVE, NO_MANAGEDSAVE, HAS_MANAGED_SAVE)
        && group(flags, AUTOSTART, NO_AUTOSTART, HAS_AUTOSTART)
        && group(flags, HAS_SNAPSHOT, NO_SNAPSHOT, HAS_SNAPSHOTS)
        && group(flags, HAS_CHECKPOINT, NO_CHECKPOINT, HAS_CHECKPOINTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::domain::DomainRef;

    fn status(state: DomainState) -> DomainStatus {
        DomainStatus {
            domain: DomainRef {
                name: "vm".into(),
                uuid: [0; 16],
                id: 1,
            },
            state,
            reason: 0,
            max_memory_kib: 1,
            memory_kib: 1,
            vcpus: 1,
            persistent: true,
        }
    }

    #[test]
    fn each_group_filters_on_its_own() {
        let paused = status(DomainState::Paused);
        let running = status(DomainState::Running);
        let off = status(DomainState::Shutoff);
        assert!(matches(&running, 0));
        assert!(matches(&running, RUNNING));
        assert!(!matches(&paused, RUNNING));
        assert!(matches(&paused, PAUSED | SHUTOFF));
        assert!(!matches(&running, PAUSED));
        assert!(matches(&off, SHUTOFF | INACTIVE));
        assert!(!matches(&off, ACTIVE));
        assert!(matches(&status(DomainState::PmSuspended), OTHER));
        assert!(!matches(&running, TRANSIENT));
        assert!(matches(&running, PERSISTENT));
        assert!(!matches(&running, AUTOSTART));
        assert!(matches(&running, NO_AUTOSTART));
        assert!(!matches(&running, HAS_SNAPSHOT));
        assert!(!matches(&running, MANAGEDSAVE));
        assert!(!matches(&running, HAS_CHECKPOINT));
        assert!(matches(
            &running,
            NO_CHECKPOINT | NO_SNAPSHOT | NO_MANAGEDSAVE
        ));
        assert!(matches(&running, ACTIVE | INACTIVE));
        let transient = DomainStatus {
            persistent: false,
            ..running
        };
        assert!(matches(&transient, TRANSIENT));
        assert!(!matches(&transient, PERSISTENT));
    }
}
