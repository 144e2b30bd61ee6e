//! The allow-lists. The evidence comes from scripts/seccomp-profile.sh (strace of the test
//! binaries, grouped by thread name) and from runs of the suite under `--seccomp=log`; every
//! entry says why the thread makes the call.

/// A system call a thread may make, and why.
pub struct Allowed(pub i64, pub &'static str);

/// An ioctl request a thread may make, and why.
pub struct Ioctl(pub u64, pub &'static str);

use libc::*;

/// Every thread: its start and end in the Rust runtime, memory, locks, time, logging, and
/// confining itself.
pub const COMMON: &[Allowed] = &[
    Allowed(SYS_futex, "Mutex, Condvar, channels, thread join"),
    Allowed(SYS_read, "eventfds, pipes, files"),
    Allowed(SYS_write, "eventfds, the console, logging to stderr"),
    Allowed(SYS_close, "fds a thread opened or was handed"),
    Allowed(SYS_mmap, "the allocator; thread stacks"),
    Allowed(SYS_munmap, "the allocator; a finished thread's stack"),
    Allowed(SYS_mprotect, "the allocator; a new thread's stack guard"),
    Allowed(
        SYS_madvise,
        "the allocator returning memory; glibc at thread exit",
    ),
    Allowed(SYS_mremap, "the allocator growing a large buffer"),
    Allowed(SYS_brk, "the allocator"),
    Allowed(SYS_rt_sigprocmask, "glibc around thread creation"),
    Allowed(
        SYS_rt_sigreturn,
        "returning from the vCPU kick signal's handler",
    ),
    Allowed(SYS_sigaltstack, "Rust's stack-overflow handler, per thread"),
    Allowed(SYS_sched_yield, "spinning locks"),
    Allowed(SYS_sched_getaffinity, "placement: where a thread may run"),
    Allowed(
        SYS_sched_setaffinity,
        "placement: vCPUs pin themselves, vcpupin moves them",
    ),
    Allowed(SYS_getrandom, "hash maps' seeds"),
    Allowed(SYS_gettid, "placement and logs name the thread"),
    Allowed(SYS_getpid, "logs; /proc/self"),
    Allowed(
        SYS_clock_gettime,
        "Instant and SystemTime when the vDSO cannot",
    ),
    Allowed(SYS_clock_nanosleep, "thread::sleep"),
    Allowed(SYS_nanosleep, "thread::sleep"),
    Allowed(SYS_exit, "a thread's end"),
    Allowed(SYS_exit_group, "the process's end"),
    Allowed(
        SYS_prctl,
        "naming a thread; PR_SET_NO_NEW_PRIVS before seccomp",
    ),
    Allowed(
        SYS_seccomp,
        "a thread a filtered thread starts installs its own filter",
    ),
    Allowed(SYS_set_robust_list, "glibc at a new thread's start"),
    Allowed(SYS_rseq, "glibc at a new thread's start"),
    Allowed(SYS_tgkill, "kicking a vCPU out of KVM_RUN; abort"),
    Allowed(SYS_rt_sigaction, "abort on a fatal error"),
    Allowed(SYS_fcntl, "fds made non-blocking or close-on-exec"),
    // Reading /proc (thread ids and CPU times for placement and statistics).
    Allowed(SYS_openat, "/proc files for placement and statistics"),
    Allowed(SYS_newfstatat, "std::fs on an open file"),
    Allowed(SYS_statx, "std::fs::metadata"),
    Allowed(SYS_fstat, "std::fs on an open file"),
    Allowed(SYS_lseek, "std::fs reads"),
    Allowed(SYS_getdents64, "/proc/self/task: a process's threads"),
    Allowed(SYS_readlink, "/proc/self/exe and fd links"),
];

/// The main loop: the GLib loop (poll, eventfds, signalfd, timers), the devices it runs
/// (virtio queues, the tap, the console), and the building and tearing down of machines on
/// `virsh start`/`destroy` (KVM ioctls, guest memory, threads, files). It also starts the
/// vCPU and I/O threads, which run under this filter too, so it holds their lists as well
/// (see `ThreadKind::syscalls`).
pub const MAIN: &[Allowed] = &[
    Allowed(SYS_poll, "the GLib main loop"),
    Allowed(SYS_ppoll, "the GLib main loop"),
    Allowed(
        SYS_eventfd2,
        "irqfds, ioeventfds, wake-ups of a new machine",
    ),
    Allowed(SYS_signalfd4, "the host signals, read by the loop"),
    Allowed(SYS_timerfd_create, "GLib timers"),
    Allowed(SYS_timerfd_settime, "GLib timers"),
    Allowed(SYS_clone3, "the threads of a new machine"),
    Allowed(SYS_clone, "the threads of a new machine (older glibc)"),
    Allowed(SYS_readv, "frames from the tap"),
    Allowed(SYS_writev, "frames to the tap; the console"),
    Allowed(
        SYS_pread64,
        "a kernel, an initrd or a definition being read",
    ),
    Allowed(SYS_access, "files a definition names"),
    Allowed(
        SYS_socket,
        "the management listeners, made on this thread (and a live server on the path probed)",
    ),
    Allowed(SYS_dup, "the serial output shared by console clients"),
    Allowed(SYS_dup3, "the serial output shared by console clients"),
    Allowed(SYS_pipe2, "GLib's wake-up pipe"),
    Allowed(SYS_getuid, "GLib"),
    Allowed(SYS_geteuid, "GLib"),
    Allowed(SYS_uname, "GLib"),
    Allowed(SYS_kill, "the VMM re-raising a fatal host signal"),
    Allowed(
        SYS_sendmsg,
        "a console stream's data to a management client",
    ),
    Allowed(
        SYS_recvmsg,
        "a console stream's data from a management client",
    ),
    Allowed(SYS_sendto, "a console stream's data to a management client"),
    Allowed(SYS_shutdown, "the management sockets at exit"),
    Allowed(SYS_epoll_ctl, "the management server's teardown at exit"),
    Allowed(SYS_ftruncate, "the serial log a new run starts"),
    Allowed(SYS_fallocate, "guest memory without holes (memfd)"),
    Allowed(SYS_memfd_create, "guest memory"),
    Allowed(SYS_setpriority, "the management threads' nice value"),
];

/// The main loop's ioctls: building a machine (on `/dev/kvm`, the VM and its vCPUs before
/// their threads start), its taps and the terminal. The vCPU threads' list is added, since
/// they start under this filter.
pub const MAIN_IOCTLS: &[Ioctl] = &[
    Ioctl(0xae00, "KVM_GET_API_VERSION: opening /dev/kvm"),
    Ioctl(0xae01, "KVM_CREATE_VM"),
    Ioctl(0xae03, "KVM_CHECK_EXTENSION: what the host's KVM offers"),
    Ioctl(
        0xae04,
        "KVM_GET_VCPU_MMAP_SIZE: mapping a new vCPU's run area",
    ),
    Ioctl(0xc008_ae05, "KVM_GET_SUPPORTED_CPUID: a new vCPU's CPUID"),
    Ioctl(0xae41, "KVM_CREATE_VCPU"),
    Ioctl(0x4020_ae46, "KVM_SET_USER_MEMORY_REGION: guest RAM"),
    Ioctl(0xae47, "KVM_SET_TSS_ADDR"),
    Ioctl(0x4008_ae48, "KVM_SET_IDENTITY_MAP_ADDR"),
    Ioctl(0x4068_aea3, "KVM_ENABLE_CAP: the split irqchip"),
    Ioctl(0x4020_ae76, "KVM_IRQFD: the devices' interrupts"),
    Ioctl(
        0x4040_ae79,
        "KVM_IOEVENTFD: the virtio queues' notifications",
    ),
    Ioctl(
        0xaea3,
        "KVM_GET_TSC_KHZ: the guest's TSC frequency (CPUID leaf 0x15)",
    ),
    Ioctl(0x4004_54ca, "TUNSETIFF: opening a tap"),
    Ioctl(0x5401, "TCGETS: whether stdin is a terminal, its settings"),
    Ioctl(0x5402, "TCSETS: the terminal in raw mode, and back at exit"),
    Ioctl(
        0x5421,
        "FIONBIO: the management listeners made non-blocking (std's set_nonblocking)",
    ),
];

/// A vCPU thread: KVM_RUN and the exits it completes (PIO/MMIO to the UART, i8042, PM
/// registers, virtio-mmio transports) write eventfds, the console and logs, all in the
/// common list; what sets a vCPU apart is its ioctls, below.
pub const VCPU: &[Allowed] = &[];

/// The KVM vCPU ioctls a vCPU thread makes: running, and loading and saving its state at
/// boot, reset and snapshot time.
pub const VCPU_IOCTLS: &[Ioctl] = &[
    Ioctl(0xae80, "KVM_RUN"),
    Ioctl(0x8090_ae81, "KVM_GET_REGS"),
    Ioctl(0x4090_ae82, "KVM_SET_REGS"),
    Ioctl(0x8138_ae83, "KVM_GET_SREGS"),
    Ioctl(0x4138_ae84, "KVM_SET_SREGS"),
    Ioctl(0xc008_ae88, "KVM_GET_MSRS"),
    Ioctl(0x4008_ae89, "KVM_SET_MSRS"),
    Ioctl(0x81a0_ae8c, "KVM_GET_FPU"),
    Ioctl(0x41a0_ae8d, "KVM_SET_FPU"),
    Ioctl(0x8400_ae8e, "KVM_GET_LAPIC"),
    Ioctl(0x4400_ae8f, "KVM_SET_LAPIC"),
    Ioctl(0x4008_ae90, "KVM_SET_CPUID2"),
    Ioctl(0x8004_ae98, "KVM_GET_MP_STATE"),
    Ioctl(0x4004_ae99, "KVM_SET_MP_STATE"),
    Ioctl(0xae9a, "KVM_NMI: virsh inject-nmi"),
    Ioctl(0x8040_ae9f, "KVM_GET_VCPU_EVENTS"),
    Ioctl(0x4040_aea0, "KVM_SET_VCPU_EVENTS"),
    Ioctl(0x9000_aea4, "KVM_GET_XSAVE"),
    Ioctl(0x5000_aea5, "KVM_SET_XSAVE"),
    Ioctl(
        0x4020_aea5,
        "KVM_SIGNAL_MSI: the IOAPIC (split irqchip) delivering",
    ),
    Ioctl(
        0x4008_ae6a,
        "KVM_SET_GSI_ROUTING: the guest reprograms the IOAPIC",
    ),
    Ioctl(0x4008_ae61, "KVM_IRQ_LINE"),
    Ioctl(0xaead, "KVM_KVMCLOCK_CTRL: the guest was paused"),
];

/// A disk's I/O thread: requests against its file, then an eventfd for the completion.
pub const BLOCK_IO: &[Allowed] = &[
    Allowed(SYS_pread64, "guest reads"),
    Allowed(SYS_pwrite64, "guest writes and write-zeroes"),
    Allowed(SYS_preadv, "guest reads"),
    Allowed(SYS_pwritev, "guest writes"),
    Allowed(SYS_fdatasync, "guest flushes"),
    Allowed(SYS_fsync, "guest flushes"),
    Allowed(
        SYS_fallocate,
        "guest discards and write-zeroes (punching holes)",
    ),
];

/// A disk's I/O thread makes no ioctl.
pub const BLOCK_IO_IOCTLS: &[Ioctl] = &[];

/// The management event loop and workers: the sockets, /proc and /sys for host data and
/// statistics, the storage pools' directories, domain XML files, the state directory (a
/// define is written by the worker that handles it), vcpupin.
pub const MANAGEMENT: &[Allowed] = &[
    Allowed(SYS_epoll_wait, "the event loop"),
    Allowed(SYS_epoll_pwait, "the event loop"),
    Allowed(SYS_epoll_ctl, "clients coming and going"),
    Allowed(SYS_accept4, "new clients"),
    Allowed(SYS_recvfrom, "client frames"),
    Allowed(SYS_recvmsg, "client frames (fds passed are refused)"),
    Allowed(SYS_sendto, "replies and events"),
    Allowed(SYS_sendmsg, "replies and events"),
    Allowed(SYS_shutdown, "dropping a client"),
    Allowed(SYS_getsockopt, "SO_PEERCRED of a new client"),
    Allowed(SYS_clone3, "more workers when calls queue up"),
    Allowed(SYS_clone, "more workers (older glibc)"),
    Allowed(SYS_setpriority, "workers run below the vCPUs"),
    Allowed(SYS_statfs, "a storage pool's free space"),
    Allowed(SYS_fstatfs, "a storage pool's free space"),
    Allowed(SYS_pread64, "domain XML and host files"),
    Allowed(SYS_uname, "virConnectGetHostname"),
    Allowed(SYS_sysinfo, "host memory figures"),
    Allowed(SYS_getrusage, "CPU time figures"),
    Allowed(SYS_eventfd2, "a console stream's wake-up"),
];

/// The management threads' ioctls: none of KVM's, only the generic fd ones.
pub const MANAGEMENT_IOCTLS: &[Ioctl] = &[
    Ioctl(0x5421, "FIONBIO: a new client's socket made non-blocking"),
    Ioctl(0x5451, "FIOCLEX"),
    Ioctl(0x541b, "FIONREAD"),
    Ioctl(0x5401, "TCGETS: isatty in logging"),
];

/// Writing the state directory and the sockets' files: a define is written by the worker
/// that handles it, an undefine or a stale temporary file removed; the main loop removes the
/// sockets at exit and stores what a run changed. Both the main loop and the management
/// threads hold this list.
pub const FILES: &[Allowed] = &[
    Allowed(SYS_pwrite64, "writing a definition"),
    Allowed(SYS_fsync, "a definition, then its directory, made durable"),
    Allowed(SYS_fdatasync, "a definition made durable"),
    Allowed(SYS_rename, "the atomic replace of a definition"),
    Allowed(SYS_renameat, "the atomic replace of a definition"),
    Allowed(SYS_renameat2, "the atomic replace of a definition"),
    Allowed(
        SYS_unlink,
        "undefine; a stale temporary file; the sockets at exit",
    ),
    Allowed(
        SYS_unlinkat,
        "undefine; a stale temporary file; the sockets at exit",
    ),
    Allowed(SYS_mkdir, "the state directory; pool-build"),
];
