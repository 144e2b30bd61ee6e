//! Numbers of the libvirt remote protocol (libvirt 9.0) that this server speaks: programs,
//! procedures, connection features, flags, limits, domain states and events.

pub const REMOTE_PROGRAM: u32 = 0x2000_8086;
pub const REMOTE_VERSION: u32 = 1;
/// libvirt's QEMU program (qemu-monitor-command, qemu-agent-command): answered "not supported".
pub const QEMU_PROGRAM: u32 = 0x2000_8087;

/// REMOTE procedures we implement.
pub mod procedure {
    pub const CONNECT_OPEN: i32 = 1;
    pub const CONNECT_CLOSE: i32 = 2;
    pub const CONNECT_GET_TYPE: i32 = 3;
    pub const CONNECT_GET_VERSION: i32 = 4;
    pub const CONNECT_GET_MAX_VCPUS: i32 = 5;
    pub const NODE_GET_INFO: i32 = 6;
    pub const CONNECT_GET_CAPABILITIES: i32 = 7;
    pub const DOMAIN_CREATE: i32 = 9;
    pub const DOMAIN_CREATE_XML: i32 = 10;
    pub const DOMAIN_DEFINE_XML: i32 = 11;
    pub const DOMAIN_DESTROY: i32 = 12;
    pub const DOMAIN_GET_XML_DESC: i32 = 14;
    pub const DOMAIN_GET_AUTOSTART: i32 = 15;
    pub const DOMAIN_GET_INFO: i32 = 16;
    pub const DOMAIN_GET_MAX_MEMORY: i32 = 17;
    pub const DOMAIN_GET_MAX_VCPUS: i32 = 18;
    pub const DOMAIN_GET_OS_TYPE: i32 = 19;
    pub const DOMAIN_GET_VCPUS: i32 = 20;
    pub const CONNECT_LIST_DEFINED_DOMAINS: i32 = 21;
    pub const DOMAIN_LOOKUP_BY_ID: i32 = 22;
    pub const DOMAIN_LOOKUP_BY_NAME: i32 = 23;
    pub const DOMAIN_LOOKUP_BY_UUID: i32 = 24;
    pub const CONNECT_NUM_OF_DEFINED_DOMAINS: i32 = 25;
    pub const DOMAIN_PIN_VCPU: i32 = 26;
    pub const DOMAIN_REBOOT: i32 = 27;
    pub const DOMAIN_RESUME: i32 = 28;
    pub const DOMAIN_SHUTDOWN: i32 = 33;
    pub const DOMAIN_SUSPEND: i32 = 34;
    pub const DOMAIN_UNDEFINE: i32 = 35;
    pub const CONNECT_LIST_DOMAINS: i32 = 37;
    pub const CONNECT_NUM_OF_DOMAINS: i32 = 51;
    pub const CONNECT_GET_HOSTNAME: i32 = 59;
    pub const CONNECT_SUPPORTS_FEATURE: i32 = 60;
    pub const DOMAIN_BLOCK_STATS: i32 = 64;
    pub const DOMAIN_INTERFACE_STATS: i32 = 65;
    pub const AUTH_LIST: i32 = 66;
    pub const CONNECT_NUM_OF_STORAGE_POOLS: i32 = 71;
    pub const CONNECT_LIST_STORAGE_POOLS: i32 = 72;
    pub const CONNECT_NUM_OF_DEFINED_STORAGE_POOLS: i32 = 73;
    pub const CONNECT_LIST_DEFINED_STORAGE_POOLS: i32 = 74;
    pub const STORAGE_POOL_CREATE_XML: i32 = 76;
    pub const STORAGE_POOL_DEFINE_XML: i32 = 77;
    pub const STORAGE_POOL_CREATE: i32 = 78;
    pub const STORAGE_POOL_BUILD: i32 = 79;
    pub const STORAGE_POOL_DESTROY: i32 = 80;
    pub const STORAGE_POOL_UNDEFINE: i32 = 82;
    pub const STORAGE_POOL_REFRESH: i32 = 83;
    pub const STORAGE_POOL_LOOKUP_BY_NAME: i32 = 84;
    pub const STORAGE_POOL_LOOKUP_BY_UUID: i32 = 85;
    pub const STORAGE_POOL_LOOKUP_BY_VOLUME: i32 = 86;
    pub const STORAGE_POOL_GET_INFO: i32 = 87;
    pub const STORAGE_POOL_GET_XML_DESC: i32 = 88;
    pub const STORAGE_POOL_GET_AUTOSTART: i32 = 89;
    pub const STORAGE_POOL_SET_AUTOSTART: i32 = 90;
    pub const STORAGE_POOL_NUM_OF_VOLUMES: i32 = 91;
    pub const STORAGE_POOL_LIST_VOLUMES: i32 = 92;
    pub const STORAGE_VOL_CREATE_XML: i32 = 93;
    pub const STORAGE_VOL_DELETE: i32 = 94;
    pub const STORAGE_VOL_LOOKUP_BY_NAME: i32 = 95;
    pub const STORAGE_VOL_LOOKUP_BY_KEY: i32 = 96;
    pub const STORAGE_VOL_LOOKUP_BY_PATH: i32 = 97;
    pub const STORAGE_VOL_GET_INFO: i32 = 98;
    pub const STORAGE_VOL_GET_XML_DESC: i32 = 99;
    pub const STORAGE_VOL_GET_PATH: i32 = 100;
    pub const NODE_GET_CELLS_FREE_MEMORY: i32 = 101;
    pub const NODE_GET_FREE_MEMORY: i32 = 102;
    pub const NODE_GET_SECURITY_MODEL: i32 = 122;
    pub const STORAGE_VOL_CREATE_XML_FROM: i32 = 125;
    pub const CONNECT_IS_SECURE: i32 = 149;
    pub const DOMAIN_IS_ACTIVE: i32 = 150;
    pub const DOMAIN_IS_PERSISTENT: i32 = 151;
    pub const STORAGE_POOL_IS_ACTIVE: i32 = 154;
    pub const STORAGE_POOL_IS_PERSISTENT: i32 = 155;
    pub const CONNECT_GET_LIB_VERSION: i32 = 157;
    pub const DOMAIN_MEMORY_STATS: i32 = 159;
    pub const DOMAIN_GET_JOB_INFO: i32 = 163;
    pub const STORAGE_VOL_WIPE: i32 = 165;
    pub const DOMAIN_HAS_MANAGED_SAVE_IMAGE: i32 = 183;
    pub const DOMAIN_GET_BLOCK_INFO: i32 = 194;
    pub const DOMAIN_CREATE_WITH_FLAGS: i32 = 196;
    pub const DOMAIN_GET_VCPUS_FLAGS: i32 = 200;
    pub const DOMAIN_OPEN_CONSOLE: i32 = 201;
    pub const CONNECT_GET_SYSINFO: i32 = 203;
    pub const DOMAIN_INJECT_NMI: i32 = 210;
    pub const DOMAIN_SCREENSHOT: i32 = 211;
    pub const DOMAIN_GET_STATE: i32 = 212;
    pub const DOMAIN_PIN_VCPU_FLAGS: i32 = 225;
    pub const DOMAIN_SEND_KEY: i32 = 226;
    pub const NODE_GET_CPU_STATS: i32 = 227;
    pub const NODE_GET_MEMORY_STATS: i32 = 228;
    pub const DOMAIN_GET_CONTROL_INFO: i32 = 229;
    pub const DOMAIN_GET_VCPU_PIN_INFO: i32 = 230;
    pub const DOMAIN_UNDEFINE_FLAGS: i32 = 231;
    pub const DOMAIN_DESTROY_FLAGS: i32 = 234;
    pub const DOMAIN_BLOCK_STATS_FLAGS: i32 = 243;
    pub const DOMAIN_RESET: i32 = 245;
    pub const DOMAIN_SHUTDOWN_FLAGS: i32 = 258;
    pub const STORAGE_VOL_WIPE_PATTERN: i32 = 259;
    pub const STORAGE_VOL_RESIZE: i32 = 260;
    pub const DOMAIN_GET_CPU_STATS: i32 = 262;
    pub const DOMAIN_GET_DISK_ERRORS: i32 = 263;
    pub const CONNECT_LIST_ALL_DOMAINS: i32 = 273;
    pub const DOMAIN_PIN_EMULATOR: i32 = 279;
    pub const DOMAIN_GET_EMULATOR_PIN_INFO: i32 = 280;
    pub const CONNECT_LIST_ALL_STORAGE_POOLS: i32 = 281;
    pub const STORAGE_POOL_LIST_ALL_VOLUMES: i32 = 282;
    pub const NODE_GET_CPU_MAP: i32 = 293;
    pub const DOMAIN_GET_JOB_STATS: i32 = 298;
    pub const CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: i32 = 316;
    pub const CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: i32 = 317;
    pub const DOMAIN_EVENT_CALLBACK_LIFECYCLE: i32 = 318;
    pub const DOMAIN_EVENT_CALLBACK_REBOOT: i32 = 319;
    pub const CONNECT_GET_DOMAIN_CAPABILITIES: i32 = 342;
    pub const CONNECT_GET_ALL_DOMAIN_STATS: i32 = 344;
    pub const DOMAIN_DEFINE_XML_FLAGS: i32 = 350;
    pub const CONNECT_REGISTER_CLOSE_CALLBACK: i32 = 360;
    pub const CONNECT_UNREGISTER_CLOSE_CALLBACK: i32 = 361;
    pub const STORAGE_VOL_GET_INFO_FLAGS: i32 = 378;
    pub const STORAGE_POOL_LOOKUP_BY_TARGET_PATH: i32 = 391;
    pub const DOMAIN_GET_MESSAGES: i32 = 426;
}

/// CONNECT_SUPPORTS_FEATURE numbers we answer 1 for.
pub const FEATURE_PROGRAM_KEEPALIVE: i32 = 10;
pub const FEATURE_REMOTE_EVENT_CALLBACK: i32 = 14;
pub const FEATURE_REMOTE_CLOSE_CALLBACK: i32 = 15;

/// CONNECT_OPEN flag: read-only connection.
pub const CONNECT_RO: u32 = 1;
/// DOMAIN_CREATE_WITH_FLAGS and DOMAIN_CREATE_XML flag: start paused.
pub const START_PAUSED: u32 = 1;

/// Event IDs 0..EVENT_ID_LAST are valid registrations in libvirt 9.0.
pub const EVENT_ID_LAST: i32 = 27;
pub const EVENT_ID_LIFECYCLE: i32 = 0;
pub const EVENT_ID_REBOOT: i32 = 1;

/// Limits of the protocol's variable-length items.
pub const STRING_MAX: usize = 4_194_304;
/// Longest cpumap of one CPU set (REMOTE_CPUMAP_MAX: 16384 host CPUs).
pub const CPUMAP_MAX: usize = 2048;
/// Most vCPUs one GET_VCPUS / GET_VCPU_PIN_INFO call may ask about (REMOTE_VCPUINFO_MAX).
pub const VCPUINFO_MAX: usize = 16_384;
/// virDomainModificationImpact: AFFECT_CURRENT is 0.
pub const AFFECT_LIVE: u32 = 1;
pub const AFFECT_CONFIG: u32 = 2;
/// virDomainVcpuFlags: the maximum rather than the current count.
pub const VCPU_MAXIMUM: u32 = 4;
pub const DOMAIN_LIST_MAX: usize = 16_384;
pub const UUID_LEN: usize = 16;

/// virDomainState.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    Running = 1,
    Paused = 3,
    Shutdown = 4,
    Shutoff = 5,
    Crashed = 6,
    PmSuspended = 7,
}

/// virDomainEventType and the detail values we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    DefinedAdded,
    DefinedUpdated,
    UndefinedRemoved,
    StartedBooted,
    SuspendedPaused,
    ResumedUnpaused,
    ShutdownFinished,
    StoppedShutdown,
    StoppedDestroyed,
    StoppedFailed,
    CrashedPanicked,
}

impl Lifecycle {
    /// (event, detail) as sent on the wire.
    pub fn wire(self) -> (i32, i32) {
        match self {
            Lifecycle::DefinedAdded => (0, 0),
            Lifecycle::DefinedUpdated => (0, 1),
            Lifecycle::UndefinedRemoved => (1, 0),
            Lifecycle::StartedBooted => (2, 0),
            Lifecycle::SuspendedPaused => (3, 0),
            Lifecycle::ResumedUnpaused => (4, 0),
            Lifecycle::ShutdownFinished => (6, 0),
            Lifecycle::StoppedShutdown => (5, 0),
            Lifecycle::StoppedDestroyed => (5, 1),
            Lifecycle::StoppedFailed => (5, 5),
            Lifecycle::CrashedPanicked => (8, 0),
        }
    }
}
