//! Management thread: the libvirt remote RPC surface, so that unmodified `virsh` and
//! libvirt-python can manage the VM (the management issue builds the server on these).
//!
//! - `xdr`: the XDR codec, bounded decoders.
//! - `wire`: framing, the message header, incremental frame reassembly, error replies.

pub mod wire;
pub mod xdr;
