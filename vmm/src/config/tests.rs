use super::*;

#[test]
fn memory_sizes() {
    assert_eq!(parse_memory_size("512M"), Ok(512 << 20));
    assert_eq!(parse_memory_size("2G"), Ok(2 << 30));
    assert_eq!(parse_memory_size("2GiB"), Ok(2 << 30));
    assert_eq!(parse_memory_size("64mb"), Ok(64 << 20));
    assert_eq!(parse_memory_size("1024"), Ok(1024 << 20));
    assert_eq!(parse_memory_size("4096K"), Ok(4 << 20));
    assert_eq!(parse_memory_size("1T"), Ok(1 << 40));
    assert!(parse_memory_size("").is_err());
    assert!(parse_memory_size("M").is_err());
    assert!(parse_memory_size("12X")
        .unwrap_err()
        .0
        .contains("unknown unit"));
    assert!(parse_memory_size("99999999999999999999G").is_err());
    assert!(parse_memory_size("18446744073709551615G").is_err());
}

#[test]
fn memory_bounds() {
    assert!(check_memory_size(4 << 20, None)
        .unwrap_err()
        .0
        .contains("too small"));
    assert_eq!(check_memory_size(8 << 20, None), Ok(8 << 20));
    let e = check_memory_size(64 << 30, Some(24 << 30)).unwrap_err();
    assert_eq!(e.0, "64 GiB is more than this host's 24 GiB of RAM");
    assert!(check_memory_size((8 << 20) + 1, None).is_err());
}

#[test]
fn serial_values() {
    assert_eq!(parse_serial("stdio"), Ok(SerialConfig::Stdio));
    assert_eq!(parse_serial("none"), Ok(SerialConfig::None));
    assert_eq!(
        parse_serial("file=/tmp/x"),
        Ok(SerialConfig::File("/tmp/x".into()))
    );
    assert!(parse_serial("file=").is_err());
    assert!(parse_serial("tcp:1")
        .unwrap_err()
        .0
        .contains("stdio, file=PATH, none"));
}

#[test]
fn cpu_counts() {
    assert_eq!(parse_cpus("1"), Ok(1));
    assert_eq!(parse_cpus("254"), Ok(254));
    assert!(parse_cpus("0").is_err());
    assert!(parse_cpus("255").is_err());
    assert!(parse_cpus("two").is_err());
}

#[test]
fn uuids_names_modes() {
    let u = random_uuid();
    assert_eq!(u[6] >> 4, 4, "version 4");
    assert_ne!(random_uuid(), u);
    assert_eq!(
        parse_uuid("6695eb01-f6a4-8304-79aa-97f2502e193f").unwrap()[0],
        0x66
    );
    assert!(parse_uuid("nope").is_err());
    assert_eq!(parse_name("web-1"), Ok("web-1".to_string()));
    assert!(parse_name("").is_err() && parse_name("a/b").is_err());
    assert_eq!(parse_mode("600"), Ok(0o600));
    assert_eq!(parse_mode("0660"), Ok(0o660));
    assert!(parse_mode("999").is_err() && parse_mode("1777").is_err());
}

#[test]
fn net_values() {
    let n = parse_net("tap=tap0,mac=52:54:00:12:34:56").unwrap();
    assert_eq!(
        (n.tap.as_str(), n.mac),
        ("tap0", [0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    assert_eq!(parse_net("tap=t").unwrap().mac[..3], [0x52, 0x54, 0]);
    assert!(parse_net("mac=52:54:00:12:34:56").is_err());
    assert!(parse_net("tap=t,mac=01:00:00:00:00:00")
        .unwrap_err()
        .0
        .contains("multicast"));
    assert!(parse_net("tap=t,mac=zz").is_err());
    assert!(parse_net("tap=averyveryverylongname").is_err());
}

#[test]
fn disk_values() {
    let d = parse_disk("path=/tmp/a.img,readonly=on,id=root").unwrap();
    assert_eq!(
        (d.path, d.readonly, d.id.as_str()),
        (PathBuf::from("/tmp/a.img"), true, "root")
    );
    assert_eq!(parse_disk("path=/x").unwrap().id, "");
    assert!(parse_disk("readonly=on")
        .unwrap_err()
        .0
        .contains("path=FILE is required"));
    assert!(parse_disk("path=/x,readonly=maybe").is_err());
    assert!(parse_disk("path=/x,size=1G").is_err());
    assert!(parse_disk("path=/x,id=123456789012345678901").is_err());
    assert!(parse_disk("/x").is_err());
}

#[test]
fn boot_modes() {
    assert_eq!(parse_boot_mode("pvh"), Ok(BootMode::Pvh));
    assert!(parse_boot_mode("bios").is_err());
}

#[test]
fn sizes_format() {
    assert_eq!(format_size(512 << 20), "512 MiB");
    assert_eq!(format_size(3 << 30), "3 GiB");
    assert_eq!(format_size(1000), "1000 bytes");
}
