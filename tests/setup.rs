//! `scripts/setup` on simulated machines: a PATH holding only the tools a scenario
//! has (small fakes that answer like the real ones), an os-release file naming the OS,
//! and the installer replaced by a stub (`STRAIT_SETUP_INSTALLER`) that records the
//! packages it is asked for and "installs" fakes of what they provide. Nothing is
//! installed for real; no Kafka is needed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RUSTUP: &str = "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh";

struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    /// A Debian machine with a C toolchain, make, pkg-config + OpenSSL headers, curl and
    /// a recent cargo, but no Java and no Maven.
    fn debian_without_java() -> Machine {
        let m = Machine { dir: tempfile::tempdir().unwrap() };
        std::fs::create_dir(m.bin()).unwrap();
        m.os_release("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n");
        for tool in ["cc", "make", "curl"] {
            m.tool(tool, "");
        }
        m.tool("pkg-config", "case \"$1\" in --exists) exit 0;; --modversion) echo 3.0.13;; esac");
        m.tool("cargo", "echo 'cargo 99.1.0 (fake)'");
        // Installing a package puts fakes of its commands on the PATH.
        let installer = format!(
            "PATH=/usr/bin:/bin\necho \"$@\" >> '{log}'\nfor p in \"$@\"; do case $p in\n\
             openjdk-*) f='{bin}/java'; echo 'echo \"openjdk version \\\"17.0.9\\\" 2023-10-17\" >&2' > \"$f\"; \
             touch '{bin}/javac';;\n\
             maven) f='{bin}/mvn'; touch \"$f\";;\n\
             ffmpeg) f='{bin}/ffmpeg'; touch \"$f\";;\n\
             esac; done\nchmod +x '{bin}'/*\n",
            log = m.requests_log().display(),
            bin = m.bin().display()
        );
        write_script(&m.dir.path().join("installer"), &installer);
        m
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn requests_log(&self) -> PathBuf {
        self.dir.path().join("requested")
    }

    fn os_release(&self, text: &str) {
        std::fs::write(self.dir.path().join("os-release"), text).unwrap();
    }

    fn tool(&self, name: &str, body: &str) {
        write_script(&self.bin().join(name), body);
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.bin().join(name)).unwrap();
    }

    /// Runs scripts/setup with only this machine's tools on the PATH.
    fn setup(&self, args: &[&str]) -> Output {
        Command::new("/bin/bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup"))
            .args(args)
            .env_clear()
            .env("PATH", self.bin())
            .env("HOME", self.dir.path())
            .env("STRAIT_SETUP_OS_RELEASE", self.dir.path().join("os-release"))
            .env("STRAIT_SETUP_INSTALLER", self.dir.path().join("installer"))
            .output()
            .expect("run scripts/setup")
    }

    /// The package lists the installer was called with, one call per entry.
    fn requested(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.requests_log())
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_machine_without_java_and_maven_gets_a_jdk_and_maven_once() {
    let m = Machine::debian_without_java();
    let out = m.setup(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let requested = m.requested();
    assert_eq!(requested.len(), 1, "one installer call: {requested:?}");
    let packages = &requested[0];
    assert_eq!(packages.len(), 2, "{packages:?}");
    assert!(packages[0].starts_with("openjdk-") && packages[0].ends_with("-jdk-headless"), "{packages:?}");
    assert_eq!(packages[1], "maven");
    assert!(text(&out).contains("installed openjdk-"), "says what it installed:\n{}", text(&out));

    // Idempotent: everything is there now, nothing more is installed.
    let again = m.setup(&[]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(m.requested().len(), 1, "{}", text(&again));
    assert!(text(&again).contains("setup: ok (java 17"), "{}", text(&again));
}

#[test]
fn missing_rust_prints_the_rustup_command_and_fails() {
    let m = Machine::debian_without_java();
    m.remove("cargo");
    let out = m.setup(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(RUSTUP), "{}", text(&out));
    // The rest is still installed in the same run.
    assert_eq!(m.requested().len(), 1, "{}", text(&out));
}

#[test]
fn a_rust_older_than_rust_version_is_refused() {
    let m = Machine::debian_without_java();
    m.tool("cargo", "echo 'cargo 1.70.0 (fake)'");
    let out = m.setup(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cargo 1.70.0 is older than Cargo.toml's rust-version"), "{}", text(&out));
}

#[test]
fn a_missing_c_toolchain_and_openssl_headers_map_to_debian_packages() {
    let m = Machine::debian_without_java();
    m.remove("cc");
    m.tool("pkg-config", "exit 1"); // pkg-config without openssl.pc
    let out = m.setup(&[]);
    let requested = m.requested();
    assert!(requested[0].contains(&"build-essential".to_string()), "{requested:?}\n{}", text(&out));
    assert!(requested[0].contains(&"libssl-dev".to_string()), "{requested:?}");
}

#[test]
fn optional_components_are_installed_on_request() {
    let m = Machine::debian_without_java();
    assert!(m.setup(&[]).status.success());
    let out = m.setup(&["ffmpeg"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(m.requested().last().unwrap(), &vec!["ffmpeg".to_string()]);

    let out = m.setup(&["no-such-thing"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("unknown component 'no-such-thing'"), "{}", text(&out));
}

#[test]
fn elsewhere_it_prints_the_command_for_this_os() {
    let m = Machine::debian_without_java();
    m.os_release("ID=fedora\nVERSION_ID=40\n");
    // No installer stub: on Fedora, setup installs nothing and says how.
    let out = Command::new("/bin/bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup"))
        .env_clear()
        .env("PATH", m.bin())
        .env("HOME", m.dir.path())
        .env("STRAIT_SETUP_OS_RELEASE", m.dir.path().join("os-release"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("dnf install -y java-17-openjdk-devel maven"), "{}", text(&out));
    assert!(m.requested().is_empty());
}
