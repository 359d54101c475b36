//! `cargo xtask demo`: the main job on a bundled target. Builds koolkit-trace and the demo
//! "shop" program, starts the shop, traces its order pricing live for a few seconds and prints
//! every call and the summary, then stops the shop.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use crate::{build_tracer, run, setup::setup, workspace_root};

pub fn demo(duration: &str) -> Result<(), String> {
    setup()?;
    let tracer = build_tracer()?;
    let root = workspace_root();
    let shop = root.join("target/demo/shop");
    std::fs::create_dir_all(shop.parent().expect("has a parent"))
        .map_err(|err| format!("creating target/demo: {err}"))?;
    run(Command::new("gcc")
        .args(["-g", "-O1", "-o"])
        .arg(&shop)
        .arg(root.join("tests/fixtures/c/shop.c")))?;

    let mut child = Command::new(&shop)
        .arg("20")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|err| format!("starting {}: {err}", shop.display()))?;
    let mut ready = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout)
        .read_line(&mut ready)
        .map_err(|err| format!("reading from the shop: {err}"))?;
    let pid = child.id().to_string();
    eprintln!(
        "\nxtask: the shop (pid {pid}) prices 20 orders a second; tracing price_order and \
         lookup_customer for {duration}:\n"
    );
    let result = run(Command::new(&tracer).args([
        "--pid",
        &pid,
        "--fn",
        "price_order",
        "--fn",
        "lookup_customer",
        "--duration",
        duration,
    ]));
    let _ = child.kill();
    let _ = child.wait();
    result
}
