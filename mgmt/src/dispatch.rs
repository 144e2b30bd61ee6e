//! Dispatch tables: one entry per procedure with its handler (which decodes its arguments and
//! encodes its result), and whether it needs an open connection, changes state (refused on
//! read-only connections) or is high priority (runs on the priority workers).

mod cpus;

use std::sync::Arc;

use crate::domain::{format_uuid, DomainRef, DomainStatus};
use crate::host;
use crate::protocol::{
    error_code, error_domain, procedure as p, CONNECT_RO, DOMAIN_LIST_MAX, EVENT_ID_LAST,
    START_PAUSED, STRING_MAX, UUID_LEN,
};
use crate::protocol::{
    FEATURE_PROGRAM_KEEPALIVE, FEATURE_REMOTE_CLOSE_CALLBACK, FEATURE_REMOTE_EVENT_CALLBACK,
    REMOTE_PROGRAM, REMOTE_VERSION,
};
use crate::server::{Callback, Client};
use crate::wire::{self, Frame, Header, MessageType, RemoteError, Status};
use crate::xdr::{XdrError, XdrReader, XdrWriter};

/// The hypervisor type clients see (`virsh version`: "Using API: VMM ...").
const DRIVER_TYPE: &str = "VMM";
/// The libvirt version whose protocol we speak.
const LIB_VERSION: u64 = 9_000_000;
const NODE_MODEL_CHARS: usize = 32;

impl From<XdrError> for RemoteError {
    fn from(_: XdrError) -> RemoteError {
        RemoteError::new(
            error_code::RPC,
            error_domain::RPC,
            "Unable to decode message payload",
        )
    }
}

pub(crate) struct Call<'a> {
    shared: &'a crate::server::Shared,
    client: &'a Arc<Client>,
}

type Handler = fn(&Call, &mut XdrReader, &mut XdrWriter) -> Result<(), RemoteError>;

struct Procedure {
    number: i32,
    name: &'static str,
    handler: Handler,
    needs_open: bool,
    mutating: bool,
    priority: bool,
}

const fn entry(number: i32, name: &'static str, handler: Handler) -> Procedure {
    Procedure {
        number,
        name,
        handler,
        needs_open: true,
        mutating: false,
        priority: false,
    }
}

const fn before_open(mut p: Procedure) -> Procedure {
    p.needs_open = false;
    p
}

const fn mutating(mut p: Procedure) -> Procedure {
    p.mutating = true;
    p
}

const fn priority(mut p: Procedure) -> Procedure {
    p.priority = true;
    p
}

/// The REMOTE program, sorted by procedure number.
static REMOTE: &[Procedure] = &[
    before_open(priority(entry(
        p::CONNECT_OPEN,
        "virConnectOpen",
        connect_open,
    ))),
    before_open(priority(entry(
        p::CONNECT_CLOSE,
        "virConnectClose",
        connect_close,
    ))),
    entry(p::CONNECT_GET_TYPE, "virConnectGetType", connect_get_type),
    entry(
        p::CONNECT_GET_VERSION,
        "virConnectGetVersion",
        connect_get_version,
    ),
    entry(
        p::CONNECT_GET_MAX_VCPUS,
        "virConnectGetMaxVcpus",
        connect_get_max_vcpus,
    ),
    entry(p::NODE_GET_INFO, "virNodeGetInfo", node_get_info),
    entry(
        p::CONNECT_GET_CAPABILITIES,
        "virConnectGetCapabilities",
        connect_get_capabilities,
    ),
    mutating(entry(p::DOMAIN_CREATE, "virDomainCreate", domain_create)),
    priority(mutating(entry(
        p::DOMAIN_DESTROY,
        "virDomainDestroy",
        domain_destroy,
    ))),
    entry(
        p::DOMAIN_GET_XML_DESC,
        "virDomainGetXMLDesc",
        domain_get_xml_desc,
    ),
    entry(
        p::DOMAIN_GET_AUTOSTART,
        "virDomainGetAutostart",
        domain_get_autostart,
    ),
    entry(p::DOMAIN_GET_INFO, "virDomainGetInfo", domain_get_info),
    entry(
        p::DOMAIN_GET_MAX_MEMORY,
        "virDomainGetMaxMemory",
        domain_get_max_memory,
    ),
    entry(
        p::DOMAIN_GET_MAX_VCPUS,
        "virDomainGetMaxVcpus",
        cpus::domain_get_max_vcpus,
    ),
    entry(
        p::DOMAIN_GET_OS_TYPE,
        "virDomainGetOSType",
        domain_get_os_type,
    ),
    entry(
        p::DOMAIN_GET_VCPUS,
        "virDomainGetVcpus",
        cpus::domain_get_vcpus,
    ),
    entry(
        p::CONNECT_LIST_DEFINED_DOMAINS,
        "virConnectListDefinedDomains",
        connect_list_defined_domains,
    ),
    entry(
        p::DOMAIN_LOOKUP_BY_ID,
        "virDomainLookupByID",
        domain_lookup_by_id,
    ),
    entry(
        p::DOMAIN_LOOKUP_BY_NAME,
        "virDomainLookupByName",
        domain_lookup_by_name,
    ),
    entry(
        p::DOMAIN_LOOKUP_BY_UUID,
        "virDomainLookupByUUID",
        domain_lookup_by_uuid,
    ),
    entry(
        p::CONNECT_NUM_OF_DEFINED_DOMAINS,
        "virConnectNumOfDefinedDomains",
        connect_num_of_defined_domains,
    ),
    mutating(entry(
        p::DOMAIN_PIN_VCPU,
        "virDomainPinVcpu",
        cpus::domain_pin_vcpu,
    )),
    mutating(entry(p::DOMAIN_REBOOT, "virDomainReboot", domain_reboot)),
    mutating(entry(p::DOMAIN_RESUME, "virDomainResume", domain_resume)),
    mutating(entry(
        p::DOMAIN_SHUTDOWN,
        "virDomainShutdown",
        domain_shutdown,
    )),
    mutating(entry(p::DOMAIN_SUSPEND, "virDomainSuspend", domain_suspend)),
    entry(
        p::CONNECT_LIST_DOMAINS,
        "virConnectListDomains",
        connect_list_domains,
    ),
    entry(
        p::CONNECT_NUM_OF_DOMAINS,
        "virConnectNumOfDomains",
        connect_num_of_domains,
    ),
    entry(
        p::CONNECT_GET_HOSTNAME,
        "virConnectGetHostname",
        connect_get_hostname,
    ),
    before_open(entry(
        p::CONNECT_SUPPORTS_FEATURE,
        "virConnectSupportsFeature",
        connect_supports_feature,
    )),
    before_open(entry(p::AUTH_LIST, "virConnectAuthList", auth_list)),
    entry(
        p::NODE_GET_SECURITY_MODEL,
        "virNodeGetSecurityModel",
        node_get_security_model,
    ),
    entry(
        p::CONNECT_IS_SECURE,
        "virConnectIsSecure",
        connect_is_secure,
    ),
    entry(p::DOMAIN_IS_ACTIVE, "virDomainIsActive", domain_is_active),
    entry(
        p::DOMAIN_IS_PERSISTENT,
        "virDomainIsPersistent",
        domain_is_persistent,
    ),
    entry(
        p::CONNECT_GET_LIB_VERSION,
        "virConnectGetLibVersion",
        connect_get_lib_version,
    ),
    entry(
        p::DOMAIN_HAS_MANAGED_SAVE_IMAGE,
        "virDomainHasManagedSaveImage",
        domain_has_managed_save_image,
    ),
    mutating(entry(
        p::DOMAIN_CREATE_WITH_FLAGS,
        "virDomainCreateWithFlags",
        domain_create_with_flags,
    )),
    entry(
        p::DOMAIN_GET_VCPUS_FLAGS,
        "virDomainGetVcpusFlags",
        cpus::domain_get_vcpus_flags,
    ),
    entry(p::DOMAIN_GET_STATE, "virDomainGetState", domain_get_state),
    mutating(entry(
        p::DOMAIN_PIN_VCPU_FLAGS,
        "virDomainPinVcpuFlags",
        cpus::domain_pin_vcpu_flags,
    )),
    entry(
        p::DOMAIN_GET_VCPU_PIN_INFO,
        "virDomainGetVcpuPinInfo",
        cpus::domain_get_vcpu_pin_info,
    ),
    priority(mutating(entry(
        p::DOMAIN_DESTROY_FLAGS,
        "virDomainDestroyFlags",
        domain_destroy_flags,
    ))),
    mutating(entry(p::DOMAIN_RESET, "virDomainReset", domain_reset)),
    mutating(entry(
        p::DOMAIN_SHUTDOWN_FLAGS,
        "virDomainShutdownFlags",
        domain_shutdown_flags,
    )),
    entry(
        p::CONNECT_LIST_ALL_DOMAINS,
        "virConnectListAllDomains",
        connect_list_all_domains,
    ),
    mutating(entry(
        p::DOMAIN_PIN_EMULATOR,
        "virDomainPinEmulator",
        cpus::domain_pin_emulator,
    )),
    entry(
        p::DOMAIN_GET_EMULATOR_PIN_INFO,
        "virDomainGetEmulatorPinInfo",
        cpus::domain_get_emulator_pin_info,
    ),
    entry(
        p::NODE_GET_CPU_MAP,
        "virNodeGetCPUMap",
        cpus::node_get_cpu_map,
    ),
    entry(
        p::CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
        "virConnectDomainEventRegisterAny",
        event_register_any,
    ),
    entry(
        p::CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY,
        "virConnectDomainEventDeregisterAny",
        event_deregister_any,
    ),
    entry(
        p::CONNECT_REGISTER_CLOSE_CALLBACK,
        "virConnectRegisterCloseCallback",
        no_op,
    ),
    entry(
        p::CONNECT_UNREGISTER_CLOSE_CALLBACK,
        "virConnectUnregisterCloseCallback",
        no_op,
    ),
    entry(
        p::DOMAIN_GET_MESSAGES,
        "virDomainGetMessages",
        domain_get_messages,
    ),
];

fn find(number: i32) -> Option<&'static Procedure> {
    REMOTE
        .binary_search_by_key(&number, |p| p.number)
        .ok()
        .map(|i| &REMOTE[i])
}

/// True for calls that go to the priority workers.
/// CONNECT_OPEN: the client's later calls are not parsed until it is answered, so none runs
/// before the connection is open (priority workers would otherwise overtake it).
pub(crate) fn is_barrier(header: &Header) -> bool {
    header.program == REMOTE_PROGRAM
        && header.version == REMOTE_VERSION
        && header.procedure == p::CONNECT_OPEN
        && header.kind == MessageType::Call.raw()
        && header.status == Status::Ok as i32
}

pub(crate) fn is_priority(header: &Header) -> bool {
    find(header.procedure).is_some_and(|p| p.priority)
}

/// Runs one call and returns the whole reply frame.
pub(crate) fn dispatch(
    shared: &crate::server::Shared,
    client: &Arc<Client>,
    frame: &Frame,
) -> Vec<u8> {
    let header = &frame.header;
    let result = run(shared, client, header, &frame.payload);
    match result {
        Ok(ret) => wire::frame(&header.reply(Status::Ok), &ret),
        Err(e) => e.reply_to(header),
    }
}

fn run(
    shared: &crate::server::Shared,
    client: &Arc<Client>,
    header: &Header,
    payload: &[u8],
) -> Result<Vec<u8>, RemoteError> {
    let proc_ = find(header.procedure).ok_or_else(|| {
        RemoteError::new(
            error_code::RPC,
            error_domain::RPC,
            format!("unknown procedure: {}", header.procedure),
        )
    })?;
    {
        let c = client.lock();
        if proc_.needs_open && !c.open {
            return Err(RemoteError::new(
                error_code::INTERNAL_ERROR,
                error_domain::RPC,
                "internal error: hypervisor connection not open",
            ));
        }
        if proc_.mutating && c.readonly {
            return Err(RemoteError::new(
                error_code::OPERATION_DENIED,
                error_domain::REMOTE,
                format!(
                    "operation forbidden: read only access prevents {}",
                    proc_.name
                ),
            ));
        }
    }
    let call = Call { shared, client };
    let mut args = XdrReader::new(payload);
    let mut ret = XdrWriter::new();
    (proc_.handler)(&call, &mut args, &mut ret)?;
    Ok(ret.into_inner())
}

fn driver_error(code: i32, message: impl Into<String>) -> RemoteError {
    RemoteError::new(code, error_domain::QEMU, message)
}

fn no_domain(detail: String) -> RemoteError {
    driver_error(error_code::NO_DOMAIN, format!("Domain not found: {detail}"))
}

impl Call<'_> {
    fn status(&self) -> DomainStatus {
        self.shared.hypervisor().status()
    }

    /// Decodes a `remote_nonnull_domain` argument and checks it names our domain (by UUID, as
    /// libvirtd does: the id a client echoes back may be stale).
    fn domain_arg(&self, args: &mut XdrReader) -> Result<DomainStatus, RemoteError> {
        let asked = DomainRef::decode(args)?;
        let status = self.status();
        if asked.uuid != status.domain.uuid {
            return Err(no_domain(format!(
                "no domain with matching uuid '{}' ({})",
                format_uuid(&asked.uuid),
                asked.name
            )));
        }
        Ok(status)
    }
}

fn connect_open(call: &Call, args: &mut XdrReader, _: &mut XdrWriter) -> Result<(), RemoteError> {
    let name = args.get_optional(|r| r.get_string(STRING_MAX))?;
    let flags = args.get_u32()?;
    log::debug!(
        "management client {} opens {:?} flags {flags:#x}",
        call.client.id,
        name
    );
    let mut c = call.client.lock();
    c.open = true;
    if flags & CONNECT_RO != 0 {
        c.readonly = true;
    }
    Ok(())
}

fn connect_close(call: &Call, _: &mut XdrReader, _: &mut XdrWriter) -> Result<(), RemoteError> {
    let mut c = call.client.lock();
    c.open = false;
    c.callbacks.clear();
    Ok(())
}

fn no_op(_: &Call, _: &mut XdrReader, _: &mut XdrWriter) -> Result<(), RemoteError> {
    Ok(())
}

fn connect_get_type(_: &Call, _: &mut XdrReader, ret: &mut XdrWriter) -> Result<(), RemoteError> {
    ret.put_string(DRIVER_TYPE);
    Ok(())
}

/// Our version as libvirt encodes versions: major * 1e6 + minor * 1e3 + micro.
fn vmm_version() -> u64 {
    let part = |s: &str| s.parse::<u64>().unwrap_or(0);
    let mut it = env!("CARGO_PKG_VERSION").split('.');
    let (major, minor, micro) = (
        it.next().map_or(0, part),
        it.next().map_or(0, part),
        it.next().map_or(0, part),
    );
    major * 1_000_000 + minor * 1_000 + micro
}

fn connect_get_version(
    _: &Call,
    _: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    ret.put_u64(vmm_version());
    Ok(())
}

fn connect_get_lib_version(
    _: &Call,
    _: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    ret.put_u64(LIB_VERSION);
    Ok(())
}

fn connect_get_max_vcpus(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let _type = args.get_optional(|r| r.get_string(STRING_MAX))?;
    ret.put_i32(i32::try_from(call.shared.hypervisor().max_vcpus()).unwrap_or(i32::MAX));
    Ok(())
}

fn node_get_info(_: &Call, _: &mut XdrReader, ret: &mut XdrWriter) -> Result<(), RemoteError> {
    let n = host::node_info();
    let mut model = [0u8; NODE_MODEL_CHARS];
    for (dst, src) in model
        .iter_mut()
        .zip(n.model.bytes().take(NODE_MODEL_CHARS - 1))
    {
        *dst = src;
    }
    for c in model {
        ret.put_u32(u32::from(c)); // char[32]: each char widened to 4 bytes
    }
    ret.put_u64(n.memory_kib);
    for v in [n.cpus, n.mhz, n.nodes, n.sockets, n.cores, n.threads] {
        ret.put_i32(v);
    }
    Ok(())
}

fn connect_get_capabilities(
    _: &Call,
    _: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    ret.put_string(&host::capabilities_xml());
    Ok(())
}

fn connect_get_hostname(
    _: &Call,
    _: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    ret.put_string(&host::hostname());
    Ok(())
}

fn connect_supports_feature(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let feature = args.get_i32()?;
    let supported = matches!(
        feature,
        FEATURE_PROGRAM_KEEPALIVE | FEATURE_REMOTE_EVENT_CALLBACK | FEATURE_REMOTE_CLOSE_CALLBACK
    );
    if feature == FEATURE_PROGRAM_KEEPALIVE {
        call.client.lock().keepalive = true;
    }
    ret.put_i32(i32::from(supported));
    Ok(())
}

fn auth_list(_: &Call, _: &mut XdrReader, ret: &mut XdrWriter) -> Result<(), RemoteError> {
    ret.put_u32(1);
    ret.put_i32(0); // REMOTE_AUTH_NONE
    Ok(())
}

fn connect_is_secure(_: &Call, _: &mut XdrReader, ret: &mut XdrWriter) -> Result<(), RemoteError> {
    ret.put_i32(1); // a local unix socket
    Ok(())
}

fn node_get_security_model(
    _: &Call,
    _: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    ret.put_u32(0); // model: empty, so virsh does not ask for a label
    ret.put_u32(0); // doi: empty
    Ok(())
}

fn domain_lookup_by_name(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let name = args.get_string(STRING_MAX)?;
    let status = call.status();
    if name != status.domain.name {
        return Err(no_domain(format!("no domain with matching name '{name}'")));
    }
    status.domain.encode(ret);
    Ok(())
}

fn domain_lookup_by_uuid(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let mut uuid = [0u8; UUID_LEN];
    uuid.copy_from_slice(args.get_fixed_opaque(UUID_LEN)?);
    let status = call.status();
    if uuid != status.domain.uuid {
        return Err(no_domain(format!(
            "no domain with matching uuid '{}'",
            format_uuid(&uuid)
        )));
    }
    status.domain.encode(ret);
    Ok(())
}

fn domain_lookup_by_id(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let id = args.get_i32()?;
    let status = call.status();
    if id < 0 || id != status.domain.id {
        return Err(no_domain(format!("no domain with matching id {id}")));
    }
    status.domain.encode(ret);
    Ok(())
}

fn connect_list_all_domains(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    const ACTIVE: u32 = 1;
    const INACTIVE: u32 = 2;
    let need_results = args.get_i32()?;
    let flags = args.get_u32()?;
    let status = call.status();
    let active = status.is_active();
    let wanted = match flags & (ACTIVE | INACTIVE) {
        ACTIVE => active,
        INACTIVE => !active,
        _ => true,
    };
    let count = u32::from(wanted);
    if need_results != 0 && wanted {
        ret.put_u32(1);
        status.domain.encode(ret);
    } else {
        ret.put_u32(0);
    }
    ret.put_u32(count);
    Ok(())
}

fn connect_num_of_domains(
    call: &Call,
    _: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    ret.put_i32(i32::from(call.status().is_active()));
    Ok(())
}

/// The `maxids`/`maxnames` argument of the list calls, bounded as libvirt bounds it.
fn list_max(args: &mut XdrReader, what: &str) -> Result<i32, RemoteError> {
    let max = args.get_i32()?;
    if max < 0 || max as usize > DOMAIN_LIST_MAX {
        return Err(RemoteError::new(
            error_code::RPC,
            error_domain::RPC,
            format!("too many domain {what} requested: {max}"),
        ));
    }
    Ok(max)
}

fn connect_list_domains(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let max = list_max(args, "ids")?;
    let status = call.status();
    if status.is_active() && max > 0 {
        ret.put_u32(1);
        ret.put_i32(status.domain.id);
    } else {
        ret.put_u32(0);
    }
    Ok(())
}

fn connect_num_of_defined_domains(
    call: &Call,
    _: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    ret.put_i32(i32::from(!call.status().is_active()));
    Ok(())
}

fn connect_list_defined_domains(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let max = list_max(args, "names")?;
    let status = call.status();
    if !status.is_active() && max > 0 {
        ret.put_u32(1);
        ret.put_string(&status.domain.name);
    } else {
        ret.put_u32(0);
    }
    Ok(())
}

fn domain_get_info(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    ret.put_u32(s.state as u32);
    ret.put_u64(s.max_memory_kib);
    ret.put_u64(s.memory_kib);
    ret.put_u32(s.vcpus);
    ret.put_u64(call.shared.hypervisor().cpu_time_ns());
    Ok(())
}

fn domain_get_state(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    check_flags(args.get_u32()?, 0, "virDomainGetState")?;
    ret.put_i32(s.state as i32);
    ret.put_i32(s.reason);
    Ok(())
}

fn domain_get_xml_desc(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    // SECURE, INACTIVE, UPDATE_CPU, MIGRATABLE: the XML is the same for all of them here.
    check_flags(args.get_u32()?, 0xf, "virDomainGetXMLDesc")?;
    ret.put_string(&call.shared.hypervisor().xml());
    Ok(())
}

fn domain_get_os_type(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    ret.put_string("hvm");
    Ok(())
}

fn domain_get_autostart(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    ret.put_i32(0);
    Ok(())
}

fn domain_is_active(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    ret.put_i32(i32::from(s.is_active()));
    Ok(())
}

/// The domain outlives a destroy (it can be started again): persistent.
fn domain_is_persistent(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    ret.put_i32(1);
    Ok(())
}

fn domain_has_managed_save_image(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    check_flags(args.get_u32()?, 0, "virDomainHasManagedSaveImage")?;
    ret.put_i32(0);
    Ok(())
}

fn domain_get_max_memory(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    ret.put_u64(s.max_memory_kib);
    Ok(())
}

fn domain_get_messages(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    // DEPRECATION, TAINTING: there are none of either.
    check_flags(args.get_u32()?, 0x3, "virDomainGetMessages")?;
    ret.put_u32(0);
    Ok(())
}

fn domain_suspend(call: &Call, args: &mut XdrReader, _: &mut XdrWriter) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    call.shared.hypervisor().suspend()
}

fn domain_resume(call: &Call, args: &mut XdrReader, _: &mut XdrWriter) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    call.shared.hypervisor().resume()
}

fn domain_shutdown(
    call: &Call,
    args: &mut XdrReader,
    _: &mut XdrWriter,
) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    call.shared.hypervisor().shutdown()
}

/// Refuses flag bits outside `allowed`, in libvirt's words.
fn check_flags(flags: u32, allowed: u32, function: &str) -> Result<(), RemoteError> {
    if flags & !allowed != 0 {
        return Err(driver_error(
            error_code::INVALID_ARG,
            format!("unsupported flags ({flags:#x}) in function {function}"),
        ));
    }
    Ok(())
}

/// The shutdown/reboot modes this machine has: the default and the ACPI power button (both
/// press the button); agent, initctl, signal and paravirt modes are refused.
fn check_power_button_flags(flags: u32, function: &str) -> Result<(), RemoteError> {
    const ACPI_POWER_BUTTON: u32 = 1;
    check_flags(flags, ACPI_POWER_BUTTON, function)
}

fn domain_shutdown_flags(
    call: &Call,
    args: &mut XdrReader,
    _: &mut XdrWriter,
) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    check_power_button_flags(args.get_u32()?, "virDomainShutdownFlags")?;
    call.shared.hypervisor().shutdown()
}

fn domain_reboot(call: &Call, args: &mut XdrReader, _: &mut XdrWriter) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    check_power_button_flags(args.get_u32()?, "virDomainReboot")?;
    call.shared.hypervisor().reboot()
}

fn domain_reset(call: &Call, args: &mut XdrReader, _: &mut XdrWriter) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    check_flags(args.get_u32()?, 0, "virDomainReset")?;
    call.shared.hypervisor().reset()
}

fn domain_destroy(call: &Call, args: &mut XdrReader, _: &mut XdrWriter) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    call.shared.hypervisor().destroy()
}

fn domain_destroy_flags(
    call: &Call,
    args: &mut XdrReader,
    _: &mut XdrWriter,
) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    // GRACEFUL: nothing is ever in flight that a hard stop would lose; REMOVE_LOGS: no logs.
    check_flags(args.get_u32()?, 0x3, "virDomainDestroyFlags")?;
    call.shared.hypervisor().destroy()
}

fn domain_create(call: &Call, args: &mut XdrReader, _: &mut XdrWriter) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    call.shared.hypervisor().create(false)
}

fn domain_create_with_flags(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    call.domain_arg(args)?;
    let flags = args.get_u32()?;
    check_flags(flags, START_PAUSED, "virDomainCreateWithFlags")?;
    call.shared.hypervisor().create(flags & START_PAUSED != 0)?;
    call.status().domain.encode(ret);
    Ok(())
}

/// Event registrations one connection may hold: each costs a message per event, so an
/// unbounded number lets one client make every event slow and the server large.
pub(crate) const MAX_CALLBACKS_PER_CLIENT: usize = 256;

fn event_register_any(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let event_id = args.get_i32()?;
    let filter = args.get_optional(DomainRef::decode)?;
    if !(0..EVENT_ID_LAST).contains(&event_id) {
        return Err(RemoteError::new(
            error_code::INVALID_ARG,
            error_domain::RPC,
            format!("unsupported event ID {event_id}"),
        ));
    }
    let mut c = call.client.lock();
    if c.callbacks.len() >= MAX_CALLBACKS_PER_CLIENT {
        return Err(RemoteError::new(
            error_code::OPERATION_FAILED,
            error_domain::RPC,
            format!(
                "too many event callbacks on this connection (at most {MAX_CALLBACKS_PER_CLIENT})"
            ),
        ));
    }
    let id = c.next_callback_id;
    c.next_callback_id = c.next_callback_id.wrapping_add(1);
    c.callbacks.push(Callback {
        id,
        event_id,
        domain_uuid: filter.map(|d| d.uuid),
    });
    drop(c);
    log::info!(
        "management client {}: event callback {id} registered (event {event_id})",
        call.client.id
    );
    ret.put_i32(id);
    Ok(())
}

fn event_deregister_any(
    call: &Call,
    args: &mut XdrReader,
    _: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let id = args.get_i32()?;
    let mut c = call.client.lock();
    let before = c.callbacks.len();
    c.callbacks.retain(|cb| cb.id != id);
    if c.callbacks.len() == before {
        return Err(RemoteError::new(
            error_code::INVALID_ARG,
            error_domain::RPC,
            format!("callback {id} is not registered"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in REMOTE.windows(2) {
            assert!(
                pair[0].number < pair[1].number,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        assert_eq!(
            find(p::DOMAIN_SUSPEND).map(|p| p.name),
            Some("virDomainSuspend")
        );
        assert!(find(9999).is_none());
        assert!(find(-1).is_none());
    }

    #[test]
    fn flags_per_procedure() {
        let open = find(p::CONNECT_OPEN).unwrap();
        assert!(!open.needs_open && open.priority);
        assert!(find(p::DOMAIN_DESTROY).unwrap().mutating);
        assert!(find(p::DOMAIN_DESTROY).unwrap().priority);
        assert!(!find(p::DOMAIN_GET_INFO).unwrap().mutating);
        assert!(!find(p::AUTH_LIST).unwrap().needs_open);
    }

    #[test]
    fn version_encoding() {
        // libvirt's major * 1,000,000 + minor * 1,000 + micro, from Cargo's own split.
        let part = |v: &str| v.parse::<u64>().unwrap();
        let want = part(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
            + part(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
            + part(env!("CARGO_PKG_VERSION_PATCH"));
        assert_eq!(vmm_version(), want);
    }
}
