//! The connection and the host: open/close, what the driver is, features, and the node facts
//! virsh asks for before anything else.

use super::args::Flags;
use super::program::Call;
use super::protocol::{
    CONNECT_RO, FEATURE_PROGRAM_KEEPALIVE, FEATURE_REMOTE_CLOSE_CALLBACK,
    FEATURE_REMOTE_EVENT_CALLBACK,
};
use crate::host;
use crate::rpc::xdr::{Encode, XdrWriter};
use crate::rpc::RemoteError;

/// The hypervisor type clients see (`virsh version`: "Using API: VMM ...").
const DRIVER_TYPE: &str = "VMM";
/// The libvirt version whose protocol we speak.
const LIB_VERSION: u64 = 9_000_000;
const NODE_MODEL_CHARS: usize = 32;
/// VIR_CONNECT_NO_ALIASES, the other bit clients send: there are no URI aliases here.
const CONNECT_NO_ALIASES: u32 = 2;

/// `{name *, flags}`.
pub fn open(
    call: &Call,
    (name, flags): (Option<String>, Flags<{ CONNECT_RO | CONNECT_NO_ALIASES }>),
) -> Result<(), RemoteError> {
    log::debug!(
        "management client {} opens {name:?} flags {:#x}",
        call.client.id,
        flags.0
    );
    call.client.with_data(|d| {
        d.open = true;
        d.readonly |= flags.has(CONNECT_RO);
    });
    Ok(())
}

pub fn close(call: &Call, (): ()) -> Result<(), RemoteError> {
    call.client.with_data(|d| {
        d.open = false;
        d.callbacks.clear();
    });
    Ok(())
}

/// Accepted and ignored: close callbacks are the client library's, fired when it loses the
/// connection.
pub fn no_op(_: &Call, (): ()) -> Result<(), RemoteError> {
    Ok(())
}

pub fn get_type(_: &Call, (): ()) -> Result<&'static str, RemoteError> {
    Ok(DRIVER_TYPE)
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

pub fn get_version(_: &Call, (): ()) -> Result<u64, RemoteError> {
    Ok(vmm_version())
}

pub fn get_lib_version(_: &Call, (): ()) -> Result<u64, RemoteError> {
    Ok(LIB_VERSION)
}

/// `{type *}`.
pub fn get_max_vcpus(call: &Call, _type: Option<String>) -> Result<i32, RemoteError> {
    Ok(i32::try_from(call.hypervisor.max_vcpus()).unwrap_or(i32::MAX))
}

/// `remote_node_get_info_ret`.
pub struct NodeInfo(host::NodeInfo);

impl Encode for NodeInfo {
    fn encode(&self, w: &mut XdrWriter) {
        let n = &self.0;
        let mut model = [0u8; NODE_MODEL_CHARS];
        for (dst, src) in model
            .iter_mut()
            .zip(n.model.bytes().take(NODE_MODEL_CHARS - 1))
        {
            *dst = src;
        }
        for c in model {
            w.put_u32(u32::from(c)); // char[32]: each char widened to 4 bytes
        }
        w.put_u64(n.memory_kib);
        for v in [n.cpus, n.mhz, n.nodes, n.sockets, n.cores, n.threads] {
            w.put_i32(v);
        }
    }
}

pub fn node_get_info(_: &Call, (): ()) -> Result<NodeInfo, RemoteError> {
    Ok(NodeInfo(host::node_info()))
}

pub fn get_hostname(_: &Call, (): ()) -> Result<String, RemoteError> {
    Ok(host::hostname())
}

/// `{feature}`: a client that speaks keepalive may be pinged from now on.
pub fn supports_feature(call: &Call, feature: i32) -> Result<i32, RemoteError> {
    let supported = matches!(
        feature,
        FEATURE_PROGRAM_KEEPALIVE | FEATURE_REMOTE_EVENT_CALLBACK | FEATURE_REMOTE_CLOSE_CALLBACK
    );
    if feature == FEATURE_PROGRAM_KEEPALIVE {
        call.client.enable_keepalive();
    }
    Ok(i32::from(supported))
}

/// REMOTE_AUTH_NONE only.
pub fn auth_list(_: &Call, (): ()) -> Result<Vec<i32>, RemoteError> {
    Ok(vec![0])
}

/// A local unix socket.
pub fn is_secure(_: &Call, (): ()) -> Result<i32, RemoteError> {
    Ok(1)
}

/// `{model, doi}`, both empty: so virsh does not ask for a security label.
pub fn node_get_security_model(
    _: &Call,
    (): (),
) -> Result<(&'static str, &'static str), RemoteError> {
    Ok(("", ""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_encoding() {
        // libvirt's major * 1,000,000 + minor * 1,000 + micro, from Cargo's own split.
        let part = |v: &str| v.parse::<u64>().unwrap();
        let want = part(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
            + part(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
            + part(env!("CARGO_PKG_VERSION_PATCH"));
        assert_eq!(super::vmm_version(), want);
    }
}
