use ri_sandbox::{Config, Runtime, Sandbox, Value};
use std::time::Instant;
fn main() {
    let runtime = Runtime::new().unwrap();
    let config = Config::default();
    let compiled = runtime
        .compile(include_bytes!("../fixtures/add.wasm"), &config)
        .unwrap();
    let n = 200_000u32;
    let (mut t_clone, mut t_new, mut t_load, mut t_call, mut t_destroy, mut t_drop) =
        (0u128, 0u128, 0u128, 0u128, 0u128, 0u128);
    for _ in 0..n {
        let z = Instant::now();
        let c = config.clone();
        let a = Instant::now();
        let mut s = Sandbox::new(&runtime, c).unwrap();
        let b = Instant::now();
        s.load_compiled(&compiled).unwrap();
        let c = Instant::now();
        let r = s.call("add", &[Value::I32(1), Value::I32(2)]).unwrap();
        let d = Instant::now();
        s.destroy();
        let e = Instant::now();
        drop(s);
        let f = Instant::now();
        std::hint::black_box(r);
        t_clone += (a - z).as_nanos();
        t_new += (b - a).as_nanos();
        t_load += (c - b).as_nanos();
        t_call += (d - c).as_nanos();
        t_destroy += (e - d).as_nanos();
        t_drop += (f - e).as_nanos();
    }
    let n = n as u128;
    println!(
        "clone {} new {} load {} call {} destroy {} drop {} ns",
        t_clone / n,
        t_new / n,
        t_load / n,
        t_call / n,
        t_destroy / n,
        t_drop / n
    );
}
