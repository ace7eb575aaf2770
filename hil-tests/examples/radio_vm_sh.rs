//! Runs a shell script in the radio bench's VM and prints what it wrote:
//! `cargo run -p hil-tests --example radio_vm_sh -- script.sh [seconds]`.
//! The workspace is shared read-only at its own path, as for the tests; for
//! trying hostapd, wpa_supplicant or bluetoothd by hand before writing a test.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use hil_tests::radio_vm::{RadioVm, workspace_root};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        bail!("usage: radio_vm_sh SCRIPT [SECONDS]");
    };
    let secs: u64 = match args.next() {
        Some(s) => s.parse().context("SECONDS")?,
        None => 120,
    };
    let script = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    let vm = RadioVm::find()?;
    let root = workspace_root();
    let run = vm.run(&script, &[root.as_path()], Duration::from_secs(secs))?;
    println!("{}", run.output);
    println!(
        "--- exit {:?} after {:.1} s",
        run.exit,
        run.elapsed.as_secs_f64()
    );
    if run.exit.is_none() {
        println!("--- console\n{}", run.console);
    }
    Ok(())
}
