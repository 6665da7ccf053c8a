//! The banner every benchmark table starts with: which CPU ran it, the SIMD flags our code and
//! ONNX Runtime choose kernels by, the runtime and the thread count.
//!
//! One file for every crate's benchmarks, included with `#[path]` (edge-agent's
//! `benches/common/mod.rs` and sync-server's `benches/load.rs`): sync-server must not depend on
//! edge-agent, and a crate of its own for twenty lines would be more than the code. Figures from
//! different CPUs differ by more than any change we measure (an Intel core took ~5x longer than
//! an AMD one on the same model file, issue 12), so a table that does not say where it ran
//! cannot be compared with anything.

/// Markdown lines to print above a table. `runtime` names the inference runtime (or says there is
/// none); `threads` says how many threads the rows use.
pub fn banner(runtime: &str, threads: &str) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "- CPU: {} ({cores} logical CPUs available)\n- flags: {}\n- runtime: {runtime}\n- threads: {threads}\n",
        cpu_model(),
        simd_flags()
    )
}

/// `model name` of /proc/cpuinfo, with family and model numbers: a virtual machine may only say
/// "AMD EPYC", and the numbers still tell the generation (family 25 model 17 is Zen 4).
fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
    };
    let name =
        field("model name").unwrap_or_else(|| "unknown (no /proc/cpuinfo model name)".into());
    match (field("cpu family"), field("model")) {
        (Some(family), Some(model)) => format!("{name}, family {family} model {model}"),
        _ => name,
    }
}

/// The flags that change which kernels run: AVX2 and FMA (our gallery product, ONNX Runtime's
/// MLAS), AVX-512F (MLAS's widest kernels), F16C (half-float galleries).
fn simd_flags() -> String {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        let yes_no = |on: bool| if on { "yes" } else { "no" };
        format!(
            "AVX2 {}, AVX-512F {}, F16C {}, FMA {}",
            yes_no(std::arch::is_x86_feature_detected!("avx2")),
            yes_no(std::arch::is_x86_feature_detected!("avx512f")),
            yes_no(std::arch::is_x86_feature_detected!("f16c")),
            yes_no(std::arch::is_x86_feature_detected!("fma")),
        )
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        format!(
            "not probed ({}: AVX2, AVX-512F, F16C and FMA are x86 flags)",
            std::env::consts::ARCH
        )
    }
}
