//! The host data calls on the wire: the nparams convention of the stats calls, the bounds
//! libvirtd puts on each array, and the refusals of arguments that name another host.

use super::{start, Peer};
use crate::remote::protocol::procedure as p;
use crate::rpc::xdr::{XdrReader, XdrWriter};

fn ints(values: &[i32], flags: Option<u32>) -> Vec<u8> {
    let mut w = XdrWriter::new();
    for v in values {
        w.put_i32(*v);
    }
    if let Some(flags) = flags {
        w.put_u32(flags);
    }
    w.into_inner()
}

/// The message of an error reply (`remote_error`: code, domain, message *, ...).
fn error_message(payload: &[u8]) -> String {
    let mut r = XdrReader::new(payload);
    let (_code, _domain) = (r.get_i32(), r.get_i32());
    r.get_optional(|r| r.get_string(1 << 20))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// `{params<>, nparams}` of a stats reply: the fields and values, and the count.
fn stats(payload: &[u8]) -> (Vec<(String, u64)>, i32) {
    let mut r = XdrReader::new(payload);
    let n = r.get_u32().unwrap();
    let params = (0..n)
        .map(|_| (r.get_string(100).unwrap(), r.get_u64().unwrap()))
        .collect();
    (params, r.get_i32().unwrap())
}

fn names(params: &[(String, u64)]) -> Vec<&str> {
    params.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn stats_calls_count_fill_and_bound_their_fields() {
    let (_server, _vm, path) = start("host-stats", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    // nparams 0: how many fields there are, and none of them.
    for procedure in [p::NODE_GET_CPU_STATS, p::NODE_GET_MEMORY_STATS] {
        let args = match procedure {
            p::NODE_GET_CPU_STATS => ints(&[-1, 0], Some(0)),
            _ => ints(&[0, -1], Some(0)),
        };
        let (status, ret) = peer.call(procedure, &args);
        assert_eq!((status, stats(&ret)), (0, (vec![], 4)), "{procedure}");
    }
    let (status, ret) = peer.call(p::NODE_GET_CPU_STATS, &ints(&[-1, 4], Some(0)));
    assert_eq!(status, 0);
    let (cpu, count) = stats(&ret);
    assert_eq!(names(&cpu), ["kernel", "user", "idle", "iowait"]);
    assert!(count == 0 && cpu[2].1 > 0, "{cpu:?}");
    let (status, ret) = peer.call(p::NODE_GET_MEMORY_STATS, &ints(&[4, -1], Some(0)));
    assert_eq!(status, 0);
    let (mem, _) = stats(&ret);
    assert_eq!(names(&mem), ["total", "free", "buffers", "cached"]);
    assert!(mem[0].1 >= mem[1].1 && mem[1].1 > 0, "{mem:?}");

    for (procedure, args, why) in [
        (
            p::NODE_GET_CPU_STATS,
            ints(&[-1, 17], Some(0)),
            "nparams too large",
        ),
        (
            p::NODE_GET_CPU_STATS,
            ints(&[-1, 3], Some(0)),
            "must be equal to 4",
        ),
        (
            p::NODE_GET_CPU_STATS,
            ints(&[-1, -1], Some(0)),
            "non-negative",
        ),
        (p::NODE_GET_CPU_STATS, ints(&[-2, 4], Some(0)), "cpuNum"),
        (
            p::NODE_GET_CPU_STATS,
            ints(&[5000, 4], Some(0)),
            "Invalid cpuNum",
        ),
        (
            p::NODE_GET_CPU_STATS,
            ints(&[-1, 4], Some(1)),
            "unsupported flags",
        ),
        (
            p::NODE_GET_MEMORY_STATS,
            ints(&[4, 5000], Some(0)),
            "cellNum",
        ),
        (
            p::NODE_GET_MEMORY_STATS,
            ints(&[2, -1], Some(0)),
            "must be 4",
        ),
        (
            p::NODE_GET_MEMORY_STATS,
            ints(&[17, -1], Some(0)),
            "nparams too large",
        ),
    ] {
        let (status, ret) = peer.call(procedure, &args);
        let message = error_message(&ret);
        assert!(status == 1 && message.contains(why), "{why}: {message}");
    }
}

#[test]
fn free_memory_calls_answer_in_bytes_within_the_cells() {
    let (_server, _vm, path) = start("host-free", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    let (status, ret) = peer.call(p::NODE_GET_FREE_MEMORY, &[]);
    let free = XdrReader::new(&ret).get_u64().unwrap();
    assert!(
        status == 0 && free > 0 && free.is_multiple_of(1024),
        "{free}"
    );
    let (status, ret) = peer.call(p::NODE_GET_CELLS_FREE_MEMORY, &ints(&[0, 1024], None));
    assert_eq!(status, 0);
    let mut r = XdrReader::new(&ret);
    let cells = r.get_u32().unwrap();
    assert!(cells >= 1 && r.get_u64().unwrap() > 0, "{cells} cells");
    for (args, why) in [
        ([0, 1025], "REMOTE_NODE_MAX_CELLS"),
        ([0, 0], "greater than zero"),
        ([-1, 1], "non-negative"),
        ([5000, 1], "start cell 5000 out of range"),
    ] {
        let (status, ret) = peer.call(p::NODE_GET_CELLS_FREE_MEMORY, &ints(&args, None));
        let message = error_message(&ret);
        assert!(status == 1 && message.contains(why), "{args:?}: {message}");
    }
}

fn domain_caps_args(arch: Option<&str>, virttype: Option<&str>) -> Vec<u8> {
    let mut w = XdrWriter::new();
    for value in [None, arch, None, virttype] {
        w.put_optional(value, |w, s| w.put_string(s));
    }
    w.put_u32(0);
    w.into_inner()
}

#[test]
fn documents_describe_this_vmm_and_refuse_other_targets() {
    let (_server, _vm, path) = start("host-docs", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    let text = |ret: &[u8]| XdrReader::new(ret).get_string(1 << 22).unwrap();
    let (status, ret) = peer.call(p::CONNECT_GET_CAPABILITIES, &[]);
    assert!(status == 0 && text(&ret).contains("<cells num="));
    let (status, ret) = peer.call(p::CONNECT_GET_SYSINFO, &ints(&[], Some(0)));
    assert!(status == 0 && text(&ret).starts_with("<sysinfo type='smbios'>"));
    let (status, ret) = peer.call(
        p::CONNECT_GET_DOMAIN_CAPABILITIES,
        &domain_caps_args(Some("x86_64"), Some("kvm")),
    );
    assert!(status == 0 && text(&ret).contains("<vcpu max='254'/>"));
    for (arch, virttype, why) in [
        (Some("aarch64"), None, "architecture 'aarch64'"),
        (None, Some("xen"), "virttype 'xen'"),
    ] {
        let (status, ret) = peer.call(
            p::CONNECT_GET_DOMAIN_CAPABILITIES,
            &domain_caps_args(arch, virttype),
        );
        let message = error_message(&ret);
        assert!(status == 1 && message.contains(why), "{why}: {message}");
    }
}
