//! The errors REMOTE handlers return, worded and numbered as libvirtd's QEMU driver words
//! and numbers them (clients and scripts match on both).

use crate::rpc::error::{code, domain, RemoteError};

/// An error of the driver (libvirt's QEMU driver reports from VIR_FROM_QEMU).
pub fn driver_error(code: i32, message: impl Into<String>) -> RemoteError {
    RemoteError::new(code, domain::QEMU, message)
}

pub fn no_domain(detail: String) -> RemoteError {
    driver_error(code::NO_DOMAIN, format!("Domain not found: {detail}"))
}

pub fn invalid_arg(message: impl Into<String>) -> RemoteError {
    driver_error(code::INVALID_ARG, message)
}

pub fn not_running() -> RemoteError {
    driver_error(
        code::OPERATION_INVALID,
        "Requested operation is not valid: domain is not running",
    )
}

/// libvirtd's own refusals (VIR_FROM_RPC) of what its dispatcher checks before a driver.
pub fn rpc_error(code: i32, message: impl Into<String>) -> RemoteError {
    RemoteError::new(code, domain::RPC, message)
}
