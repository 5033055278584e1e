//! The file load: a directory of generated files (empty to 4 MB, random
//! bytes from a seed), downloads that compare every byte with the file,
//! slow downloads read a little at a time, and requests for names that
//! are not there.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::net::{connect, nap, Rng, Shared};

/// A served file: its name under the root and its bytes.
pub struct Served {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Writes the files under `root` (in a subdirectory too) and returns
/// them, the biggest last.
pub fn make_tree(root: &Path) -> Vec<Served> {
    let mut rng = Rng::new(0xF11E);
    std::fs::create_dir_all(root.join("sub")).expect("the file root");
    [
        ("empty", 0usize),
        ("one", 1),
        ("small.txt", 1000),
        ("sub/page", 65_536),
        ("sub/odd.bin", 300_001),
        ("meg.bin", 1_048_577),
        ("big.bin", 4_000_000),
    ]
    .into_iter()
    .map(|(name, size)| {
        let bytes = rng.bytes(size);
        std::fs::write(root.join(name), &bytes).expect("write a served file");
        Served {
            name: name.to_string(),
            bytes,
        }
    })
    .collect()
}

/// One download of `f`, read `chunk` bytes at a time with `pause` between
/// reads; true if every byte matched and the server then closed.
fn download(
    shared: &Shared,
    addr: SocketAddr,
    f: &Served,
    chunk: usize,
    pause: Duration,
) -> std::io::Result<bool> {
    let mut s = connect(shared, "file", addr)?;
    s.write_all(format!("{}\n", f.name).as_bytes())?;
    let mut got = Vec::with_capacity(f.bytes.len());
    let mut buf = vec![0u8; chunk];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.len() > f.bytes.len() {
            break;
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    Ok(got == f.bytes)
}

/// Downloads, one after another until the run stops: a random file, whole
/// and compared; one in ten is slow (16 KiB every 20 ms, a file of up to
/// 300 KB) and one in ten asks for a name that is not there.
pub fn downloader(shared: Arc<Shared>, addr: SocketAddr, files: Arc<Vec<Served>>, seed: u64) {
    let mut rng = Rng::new(seed);
    for _ in 0..1_000_000 {
        if shared.stopping() {
            return;
        }
        match rng.range(0, 9) {
            0 => {
                let f = &files[rng.range(0, 4) as usize];
                check(
                    &shared,
                    &f.name,
                    download(&shared, addr, f, 16384, Duration::from_millis(20)),
                );
            }
            1 => missing(&shared, addr, &mut rng),
            _ => {
                let f = &files[rng.range(0, files.len() as u64 - 1) as usize];
                check(
                    &shared,
                    &f.name,
                    download(&shared, addr, f, 65536, Duration::ZERO),
                );
            }
        }
        nap(&shared, rng.pause(300, 1200));
    }
}

fn check(shared: &Shared, name: &str, result: std::io::Result<bool>) {
    match result {
        Ok(true) => shared.downloads.add(1),
        Ok(false) => {
            shared.download_mismatches.add(1);
            shared.fail(format!("file: {name} came back different"));
        }
        Err(err) => shared.fail(format!("file: {name}: {err}")),
    }
}

/// A name that is not there: the refusal, then the close.
fn missing(shared: &Shared, addr: SocketAddr, rng: &mut Rng) {
    let result = (|| {
        let mut s = connect(shared, "file", addr)?;
        s.write_all(format!("nothing/here{}\n", rng.range(0, 999)).as_bytes())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok::<_, std::io::Error>(answer)
    })();
    match result {
        Ok(a) if a == "ERROR: File not found\n" => {}
        Ok(a) => shared.fail(format!("file: a missing name got {a:?}")),
        Err(err) => shared.fail(format!("file: a missing name: {err}")),
    }
}
