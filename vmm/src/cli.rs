//! The `vmm` command line: `vmm run [OPTIONS]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, BootMode, KernelSource, SerialConfig, VmConfig};

#[derive(Debug, Parser)]
#[command(name = "vmm", version, about = "Run one KVM virtual machine", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest. Without --kernel, boots the built-in test guest.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Kernel to boot: ELF vmlinux (PVH note or 64-bit entry) or bzImage.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "STRING")]
    pub cmdline: Option<String>,
    /// Number of vCPUs (1-254).
    #[arg(long, value_name = "N", default_value = "1", value_parser = config::parse_cpus)]
    pub cpus: u8,
    /// Guest RAM: a number of MiB, or with a K/M/G/T suffix (512M, 2G).
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = config::parse_memory_size)]
    pub memory: u64,
    /// Serial console: stdio, file=PATH or none.
    #[arg(long, value_name = "WHERE", default_value = "stdio", value_parser = config::parse_serial)]
    pub serial: SerialConfig,
    /// Exit instead of rebooting when the guest resets (like QEMU's -no-reboot).
    #[arg(long)]
    pub no_reboot: bool,
    /// Boot entry: auto (PVH when the ELF has a PVH note), pvh or linux64.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = config::parse_boot_mode)]
    pub boot: BootMode,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "warn", value_parser = parse_log_level)]
    pub log_level: log::LevelFilter,
}

/// Kernel command line used for a user's kernel when none is given.
pub const DEFAULT_LINUX_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";

impl RunArgs {
    /// Turns the arguments into a configuration, checking what clap cannot: files exist and
    /// the memory size fits this host. Errors name the flag.
    pub fn to_config(&self) -> Result<VmConfig, String> {
        for (flag, path) in [("--kernel", &self.kernel), ("--initrd", &self.initrd)] {
            if let Some(path) = path {
                check_readable_file(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
            }
        }
        let memory = config::check_memory_size(self.memory, config::host_ram_bytes())
            .map_err(|e| format!("--memory: {e}"))?;
        let kernel = match &self.kernel {
            Some(path) => KernelSource::File(path.clone()),
            None => KernelSource::Embedded,
        };
        let cmdline = match (&self.cmdline, &kernel) {
            (Some(c), _) => c.clone(),
            (None, KernelSource::File(_)) => DEFAULT_LINUX_CMDLINE.to_string(),
            (None, KernelSource::Embedded) => String::new(),
        };
        Ok(VmConfig {
            kernel,
            initrd: self.initrd.clone(),
            cmdline,
            cpus: self.cpus,
            memory,
            serial: self.serial.clone(),
            no_reboot: self.no_reboot,
            boot: self.boot,
        })
    }
}

fn parse_log_level(text: &str) -> Result<log::LevelFilter, String> {
    match text.parse::<log::LevelFilter>() {
        Ok(level) if level != log::LevelFilter::Off => Ok(level),
        _ => Err(format!(
            "'{text}' is not one of error, warn, info, debug, trace"
        )),
    }
}

/// A file we can open for reading and that is not a directory.
fn check_readable_file(path: &std::path::Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| describe_io_error(&e))?;
    let meta = file.metadata().map_err(|e| describe_io_error(&e))?;
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    Ok(())
}

/// The OS error text without Rust's " (os error N)" suffix.
pub fn describe_io_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vmm").chain(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).expect("valid arguments").command {
            Command::Run(r) => r,
        }
    }

    #[test]
    fn defaults_boot_the_embedded_guest() {
        let cfg = run_args(&["run"]).to_config().unwrap();
        assert_eq!(cfg.kernel, KernelSource::Embedded);
        assert_eq!(cfg.cpus, 1);
        assert_eq!(cfg.memory, 512 << 20);
        assert_eq!(cfg.serial, SerialConfig::Stdio);
        assert_eq!(cfg.cmdline, "");
        assert!(!cfg.no_reboot);
    }

    #[test]
    fn all_flags() {
        let r = run_args(&[
            "run",
            "--cpus",
            "2",
            "--memory",
            "1G",
            "--serial",
            "file=/tmp/s",
            "--no-reboot",
            "--cmdline",
            "end=exit",
            "--boot",
            "linux64",
            "--log-level",
            "debug",
        ]);
        let cfg = r.to_config().unwrap();
        assert_eq!(cfg.cpus, 2);
        assert_eq!(cfg.memory, 1 << 30);
        assert_eq!(cfg.serial, SerialConfig::File("/tmp/s".into()));
        assert!(cfg.no_reboot);
        assert_eq!(cfg.cmdline, "end=exit");
        assert_eq!(cfg.boot, BootMode::Linux64);
        assert_eq!(r.log_level, log::LevelFilter::Debug);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["run", "--cpus", "0"][..], "--cpus"),
            (&["run", "--memory", "lots"][..], "--memory"),
            (&["run", "--serial", "tcp"][..], "--serial"),
            (&["run", "--log-level", "loud"][..], "--log-level"),
        ] {
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
    }

    #[test]
    fn missing_kernel_file_is_named() {
        let e = run_args(&["run", "--kernel", "/nonexistent/vmlinux"])
            .to_config()
            .unwrap_err();
        assert_eq!(
            e,
            "--kernel /nonexistent/vmlinux: No such file or directory"
        );
        let e = run_args(&["run", "--kernel", "/tmp"])
            .to_config()
            .unwrap_err();
        assert_eq!(e, "--kernel /tmp: is a directory");
    }

    #[test]
    fn memory_too_small_is_named() {
        let e = run_args(&["run", "--memory", "1M"])
            .to_config()
            .unwrap_err();
        assert!(e.starts_with("--memory: 1 MiB is too small"), "{e}");
    }

    #[test]
    fn user_kernel_gets_a_console_cmdline() {
        let exe = std::env::current_exe().unwrap();
        let cfg = run_args(&["run", "--kernel", exe.to_str().unwrap()])
            .to_config()
            .unwrap();
        assert_eq!(cfg.cmdline, DEFAULT_LINUX_CMDLINE);
    }
}
