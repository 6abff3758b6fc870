//! The dashboard's terminal going away (its window or SSH connection closed)
//! ends the run cleanly, with its report: it used to spin at full speed on the
//! hung-up terminal and ignore SIGTERM.
#![cfg(unix)]

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A pseudo-terminal: (master, slave), neither inherited by children.
fn open_pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: out-pointers to two ints and a winsize; no name, default termios.
    let ok = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &size,
        )
    };
    assert_eq!(ok, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [master, slave] {
        // SAFETY: fcntl on a descriptor just opened.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both descriptors are open and owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Reads what the terminal shows for up to `limit`, until `enough` bytes came.
fn read_some(master: &OwnedFd, enough: usize, limit: Duration) -> usize {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + limit;
    let mut total = 0;
    while total < enough && Instant::now() < deadline {
        let mut poll = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut poll, 1, 100) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer of the length given.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        total += n as usize;
    }
    total
}

/// Starts the long realtime run on a fresh pseudo-terminal (its stdin, stdout
/// and stderr) and waits for the dashboard to draw.
fn start_on_terminal(report: &Path) -> (OwnedFd, std::process::Child) {
    let _ = std::fs::remove_file(report);
    let (master, slave) = open_pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_continuum"))
        .args(["run", "scenarios/seed-1000.ron", "--report"])
        .arg(report)
        .current_dir(common::root())
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    // The dashboard is up once it has drawn a screenful or so.
    let shown = read_some(&master, 4000, Duration::from_secs(20));
    assert!(shown >= 4000, "the dashboard drew {shown} bytes");
    assert!(child.try_wait().unwrap().is_none(), "the run ended early");
    (master, child)
}

/// `q` on the dashboard ends the run (keys are read from the terminal).
#[test]
fn q_on_the_dashboard_ends_the_run() {
    use std::os::fd::AsRawFd;
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("q-pressed.json");
    let (master, mut child) = start_on_terminal(&report);
    // SAFETY: writes one byte from a valid buffer.
    let written = unsafe { libc::write(master.as_raw_fd(), b"q".as_ptr().cast(), 1) };
    assert_eq!(written, 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("q did not end the run");
        }
        read_some(&master, usize::MAX, Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["interrupted"], true);
}

#[test]
fn a_hung_up_terminal_ends_the_run_with_its_report() {
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hung-up.json");
    let (master, mut child) = start_on_terminal(&report);
    drop(master); // hang up
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run went on after its terminal hung up");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["interrupted"], true);
    assert!(json["virtual_seconds"].as_f64().unwrap() < 30.0);
}
