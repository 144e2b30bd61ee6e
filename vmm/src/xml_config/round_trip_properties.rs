//! Property: every machine the CLI can describe, `virsh dumpxml` prints as XML that
//! `virsh define` reads back into the same configuration. The arguments are random; the
//! files they name are real (the CLI opens them), in a directory of this test's own.

use std::path::PathBuf;
use std::sync::OnceLock;

use clap::Parser;
use proptest::prelude::*;

use super::read_domain;
use crate::affinity;
use crate::cli::{Cli, Command};
use crate::domain_xml::{domain_xml, escape};

/// Where the generated kernels, initrds and disks are created.
fn files_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vmm-xml-round-trip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
}

/// A file the CLI can open, named `name` in the scratch directory.
fn real_file(name: &str) -> String {
    let path = files_dir().join(name);
    std::fs::write(&path, b"x").expect("a scratch file");
    path.to_str()
        .expect("generated names are UTF-8")
        .to_string()
}

/// Text that often holds what XML treats specially (markup, quotes, leading and trailing
/// blanks, tab, newline, carriage return) and sometimes any character at all.
fn text(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        3 => proptest::string::string_regex(&format!("[ -~\t\n\r]{{0,{max}}}")).unwrap(),
        1 => proptest::string::string_regex(&format!("(?s).{{0,{max}}}")).unwrap(),
    ]
    .boxed()
}

/// XML 1.0's characters (what check_xml_text lets through), as a regex class body.
const XML_CHARS: &str = "\\t\\n\\r\\u{20}-\\u{d7ff}\\u{e000}-\\u{fffd}\\u{10000}-\\u{10ffff}";

/// Up to `max` XML characters, but not those in `except`.
fn xml_text(min: usize, max: usize, except: &str) -> BoxedStrategy<String> {
    let class = match except {
        "" => format!("[{XML_CHARS}]"),
        _ => format!("[[{XML_CHARS}]--[{except}]]"),
    };
    proptest::string::string_regex(&format!("{class}{{{min},{max}}}"))
        .expect("a valid regex")
        .boxed()
}

/// A file name: not '/' (',' ends a --disk value, so not that either).
fn file_name() -> impl Strategy<Value = String> {
    xml_text(1, 10, "/,").prop_map(|name| format!("f{name}"))
}

/// A host CPU list inside what this process may run on, in the CLI's syntax.
fn host_cpus() -> impl Strategy<Value = String> {
    let allowed: Vec<usize> = affinity::process_cpus().iter().collect();
    proptest::sample::subsequence(allowed.clone(), 1..=allowed.len()).prop_map(|cpus| {
        cpus.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn disk() -> impl Strategy<Value = String> {
    (
        file_name(),
        any::<bool>(),
        proptest::option::of(xml_text(0, 20, ",")),
    )
        .prop_map(|(name, readonly, id)| {
            let mut spec = format!("path={}", real_file(&name));
            if readonly {
                spec += ",readonly=on";
            }
            if let Some(id) = id.filter(|id| id.len() <= 20) {
                spec += &format!(",id={id}");
            }
            spec
        })
}

fn net() -> impl Strategy<Value = String> {
    (
        xml_text(1, 15, ",="),
        proptest::option::of(any::<[u8; 6]>()),
    )
        .prop_map(|(tap, mac)| {
            let mut spec = format!("tap={}", truncate_bytes(&tap, 15));
            if let Some(mut mac) = mac {
                mac[0] &= !1; // a unicast address
                spec += &format!(",mac={}", crate::domain_xml::format_mac(&mac));
            }
            spec
        })
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate_bytes(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `vmm run` arguments describing a machine, with every flag the XML can express.
fn run_arguments() -> impl Strategy<Value = Vec<String>> {
    let machine = (
        "[^/\\p{Cc}]{1,24}",
        proptest::option::of(any::<[u8; 16]>()),
        proptest::option::of(file_name()),
        proptest::option::of(file_name()),
        proptest::option::of(text(40)),
        1u8..=crate::config::MAX_VCPUS,
        (crate::config::MIN_MEMORY >> 12)..=(1u64 << 18),
    );
    let devices = (
        prop_oneof![
            Just("stdio".to_string()),
            Just("none".to_string()),
            xml_text(1, 16, "/").prop_map(|name| format!(
                "file={}",
                files_dir().join(name.replace('/', "_")).display()
            )),
        ],
        proptest::collection::vec(disk(), 0..4),
        proptest::collection::vec(net(), 0..3),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    );
    let tuning = (
        proptest::collection::vec((any::<u8>(), host_cpus()), 0..4),
        proptest::option::of(host_cpus()),
        prop_oneof![Just("auto"), Just("spread"), Just("none")],
    );
    (machine, devices, tuning).prop_map(
        |(
            (name, uuid, kernel, initrd, cmdline, cpus, pages),
            (serial, disks, nets, (no_reboot, no_acpi, rng)),
            (pins, emulator_pin, placement),
        )| {
            let mut args: Vec<String> = vec!["vmm".into(), "run".into()];
            // `--flag=value`, so that a value starting with '-' stays a value.
            let mut flag = |name: &str, value: String| args.push(format!("--{name}={value}"));
            flag("name", name);
            if let Some(uuid) = uuid {
                flag("uuid", mgmt::remote::domain::format_uuid(&uuid));
            }
            if let Some(kernel) = kernel {
                flag("kernel", real_file(&kernel));
            }
            if let Some(initrd) = initrd {
                flag("initrd", real_file(&initrd));
            }
            if let Some(cmdline) = cmdline {
                flag("cmdline", cmdline);
            }
            flag("cpus", cpus.to_string());
            flag("memory", format!("{}K", pages * 4));
            flag("serial", serial);
            disks.into_iter().for_each(|d| flag("disk", d));
            nets.into_iter().for_each(|n| flag("net", n));
            let mut pinned = std::collections::BTreeSet::new();
            for (vcpu, cpus_list) in pins {
                let vcpu = vcpu % cpus;
                if pinned.insert(vcpu) {
                    flag("vcpu-pin", format!("{vcpu}={cpus_list}"));
                }
            }
            if let Some(cpus_list) = emulator_pin {
                flag("emulator-pin", cpus_list);
            }
            flag("vcpu-placement", placement.to_string());
            for (on, name) in [
                (no_reboot, "--no-reboot"),
                (no_acpi, "--no-acpi"),
                (rng, "--rng"),
            ] {
                if on {
                    args.push(name.into());
                }
            }
            args
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn what_the_cli_accepts_dumpxml_prints_and_define_reads_back(args in run_arguments()) {
        let parsed = Cli::try_parse_from(&args).map_err(|e| e.to_string()).and_then(|cli| {
            match cli.command {
                Command::Run(run) => Ok((run.to_config()?, run.vcpu_placement)),
                Command::Serve(_) => Err("not a run".into()),
            }
        });
        let (config, placement) = match parsed {
            Ok(parsed) => parsed,
            // Text XML cannot carry is refused up front, so dumpxml never meets it.
            Err(e) if e.contains("domain XML cannot") => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("{args:?}: {e}"))),
        };
        let xml = domain_xml(&config, None, "/usr/bin/vmm");
        let back = read_domain(&xml, placement)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?
            .config;
        // What XML does not carry (the boot entry, SIGTERM's action) comes from the flags.
        prop_assert_eq!(&back, &config, "{}", xml);
        prop_assert_eq!(domain_xml(&back, None, "/usr/bin/vmm"), xml);
    }

    #[test]
    fn escaped_text_reads_back_in_elements_and_attributes(
        // XML 1.0's characters, as check_xml_text allows them.
        text in "[\t\n\r\u{20}-\u{d7ff}\u{e000}-\u{fffd}\u{10000}-\u{10ffff}]{0,64}"
    ) {
        prop_assert!(crate::config::check_xml_text(&text).is_ok());
        let doc = format!("<a b='{0}'>{0}</a>", escape(&text));
        let parsed = roxmltree::Document::parse(&doc)
            .map_err(|e| TestCaseError::fail(format!("{e}: {doc}")))?;
        let root = parsed.root_element();
        prop_assert_eq!(root.attribute("b"), Some(text.as_str()));
        prop_assert_eq!(root.text().unwrap_or(""), text.as_str());
    }
}

#[test]
fn text_xml_cannot_carry_is_refused_by_the_cli() {
    for args in [
        vec!["vmm", "run", "--cmdline", "a\u{1}b"],
        vec!["vmm", "run", "--serial", "file=/tmp/a\u{7}"],
        vec!["vmm", "run", "--name", "a\u{ffff}"],
    ] {
        let error = match Cli::try_parse_from(&args) {
            Err(e) => e.to_string(),
            Ok(Cli {
                command: Command::Run(run),
            }) => run.to_config().expect_err("refused"),
            Ok(_) => unreachable!(),
        };
        assert!(
            error.contains("domain XML cannot") || error.contains("usable domain name"),
            "{args:?}: {error}"
        );
    }
}

#[test]
fn relative_paths_are_kept_absolute() {
    // cargo runs tests in the package directory, which has a Cargo.toml.
    let cli = Cli::try_parse_from(["vmm", "run", "--kernel", "Cargo.toml"]).unwrap();
    let Command::Run(run) = cli.command else {
        unreachable!()
    };
    let config = run.to_config().unwrap();
    let want = std::env::current_dir().unwrap().join("Cargo.toml");
    assert_eq!(config.kernel_path(), Some(want));
}
