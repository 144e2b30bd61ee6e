//! The host's end of the fuzzed virtio-net device's tap: frames sent here arrive on the tap,
//! where the device reads them for the guest's receive queue, as frames from a real network
//! would. The tap lives in a network namespace of the fuzzer's own, so what the guest sends
//! reaches no real host stack, and the interface is up with IPv6 off, so the kernel sends
//! nothing of its own.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Moves the calling thread (the fuzzer's, which makes the tap and runs every input) into a
/// new network namespace. Needs CAP_SYS_ADMIN, like the tap itself needs CAP_NET_ADMIN.
pub fn enter_own_network_namespace() -> io::Result<()> {
    // SAFETY: unshare(2) takes no pointers.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub struct TapPeer {
    socket: OwnedFd,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A new socket, owned so that it is closed on every path.
fn socket(domain: libc::c_int, kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let fd = check(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl TapPeer {
    /// Brings the interface `name` up (IPv6 off first) and opens a packet socket on it.
    pub fn open(name: &str) -> io::Result<TapPeer> {
        // An interface without IPv6 sends no router or neighbour solicitations.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        let mut request: libc::ifreq = {
            // SAFETY: ifreq is plain old data; all zeroes is a valid value.
            unsafe { std::mem::zeroed() }
        };
        let bytes = name.as_bytes();
        if bytes.len() >= request.ifr_name.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
        }
        for (to, from) in request.ifr_name.iter_mut().zip(bytes) {
            *to = *from as libc::c_char;
        }
        let control = socket(libc::AF_INET, libc::SOCK_DGRAM)?;
        // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write one ifreq, which `request` is.
        unsafe {
            check(libc::ioctl(
                control.as_raw_fd(),
                libc::SIOCGIFFLAGS,
                &mut request,
            ))?;
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            check(libc::ioctl(
                control.as_raw_fd(),
                libc::SIOCSIFFLAGS,
                &mut request,
            ))?;
        }
        let name_c = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
        // SAFETY: a NUL-terminated name that lives across the call.
        let index = unsafe { libc::if_nametoindex(name_c.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: this socket only sends; it receives nothing.
        let socket = socket(libc::AF_PACKET, libc::SOCK_RAW)?;
        let mut address: libc::sockaddr_ll = {
            // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
            unsafe { std::mem::zeroed() }
        };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = index as i32;
        // SAFETY: bind(2) reads `address`, whose size is passed with it.
        check(unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(TapPeer { socket })
    }

    /// Sends `frame` (an Ethernet frame, header first) out of the interface, into the tap.
    /// The kernel refuses frames shorter than an Ethernet header or longer than the MTU.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: send(2) reads `frame`, whose length is passed with it.
        let rc = unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
