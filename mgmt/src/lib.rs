//! Management thread: the libvirt remote RPC surface (filled in by the management issue).
