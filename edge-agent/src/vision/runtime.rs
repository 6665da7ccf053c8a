//! Finding and loading ONNX Runtime and the model files, and turning verified model bytes into
//! sessions. The only place that chooses execution providers and thread counts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use sha2::{Digest, Sha256};

use super::VisionError;
use super::manifest::ModelFile;

/// The command that installs the runtime and models; every "missing" error names it.
pub const SETUP_COMMAND: &str = "scripts/setup";

/// Where a packaged box keeps the library and models (the systemd unit's layout).
const SYSTEM_LIBRARY: &str = "/usr/lib/rollcall/libonnxruntime.so";
const SYSTEM_MODELS: &str = "/usr/share/rollcall/models";
/// The same, under the install prefix above the binary: a package unpacked into another root
/// (`dpkg-deb -x`, a container layer) finds its own library and models, not the host's.
const PREFIX_LIBRARY: &str = "lib/rollcall/libonnxruntime.so";
const PREFIX_MODELS: &str = "share/rollcall/models/manifest.toml";

/// Library file name inside the project-local `runtime/` folder that `scripts/setup` fills.
const LOCAL_LIBRARY: &str = "runtime/libonnxruntime.so";

/// Threads used inside one inference call. Two cores on the reference box: use both by default.
#[derive(Clone, Debug, Default)]
pub struct RuntimeOptions {
    /// Intra-op threads per session; 0 lets ONNX Runtime use every core.
    pub intra_threads: usize,
    /// Folder holding the model files; found automatically when `None`.
    pub models_dir: Option<PathBuf>,
    /// The execution provider asked for (`[vision] provider`); see [`resolve`].
    pub provider: Provider,
}

/// Where inference runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Cpu,
    /// NVIDIA GPUs through CUDA (ONNX Runtime's GPU build).
    Cuda,
    /// NVIDIA TensorRT (Jetson), with CUDA for what TensorRT does not take.
    Tensorrt,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::Tensorrt => "tensorrt",
        })
    }
}

/// The provider sessions get when `asked` is asked for: it, when the loaded runtime was built
/// with it, else CPU with a warning (a CPU-only `libonnxruntime.so` on a GPU box still works).
pub fn resolve(asked: Provider) -> Result<Provider, VisionError> {
    use ort::ep::ExecutionProvider;
    environment()?;
    let has = |available: ort::Result<bool>| available.unwrap_or(false);
    let got = match asked {
        Provider::Cpu => Provider::Cpu,
        Provider::Cuda if has(ort::ep::CUDA::is_available()) => Provider::Cuda,
        Provider::Tensorrt if has(ort::ep::TensorRT::is_available()) => Provider::Tensorrt,
        Provider::Cuda | Provider::Tensorrt => {
            static WARNED: OnceLock<()> = OnceLock::new();
            if WARNED.set(()).is_ok() {
                tracing::warn!(
                asked = %asked,
                library = %library_path().map(|p| p.display().to_string()).unwrap_or_default(),
                "the loaded ONNX Runtime has no {asked} execution provider: inference runs on the CPU. Install ONNX Runtime's GPU build (or NVIDIA's Jetson build) for {asked}"
                );
            }
            Provider::Cpu
        }
    };
    Ok(got)
}

static ENVIRONMENT: OnceLock<Result<Arc<Environment>, String>> = OnceLock::new();

/// Loads ONNX Runtime once per process. `ORT_DYLIB_PATH` overrides the search.
pub fn environment() -> Result<Arc<Environment>, VisionError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = library_path().ok_or_else(|| {
                format!("ONNX Runtime library not found (looked for ORT_DYLIB_PATH, {LOCAL_LIBRARY} and {PREFIX_LIBRARY} above the binary or the working directory, and {SYSTEM_LIBRARY})")
            })?;
            let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
            builder
                .with_name("rollcall")
                .build()
                .map(Arc::new)
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .clone()
        .map_err(|reason| VisionError::Runtime {
            reason,
            fix: SETUP_COMMAND,
        })
}

fn library_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(path));
    }
    find_upwards(Path::new(LOCAL_LIBRARY))
        .or_else(|| find_upwards(Path::new(PREFIX_LIBRARY)))
        .or_else(|| {
            let system = PathBuf::from(SYSTEM_LIBRARY);
            system.exists().then_some(system)
        })
}

/// Looks for `relative` in the folders above the executable, then above the working directory.
/// This lets `target/release/edge-agent`, test binaries in `target/debug/deps/` and an installed
/// copy all find a checkout's `runtime/` and `models/` without anyone exporting a variable.
fn find_upwards(relative: &Path) -> Option<PathBuf> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let cwd = std::env::current_dir().ok();
    [exe_dir, cwd]
        .into_iter()
        .flatten()
        .flat_map(|start| {
            start
                .ancestors()
                .map(|dir| dir.join(relative))
                .collect::<Vec<_>>()
        })
        .find(|candidate| candidate.exists())
}

/// The folder holding the model files: the option, `ROLLCALL_MODELS`, a checkout's `models/`,
/// or the system folder.
pub fn models_dir(options: &RuntimeOptions) -> Result<PathBuf, VisionError> {
    if let Some(dir) = &options.models_dir {
        return Ok(dir.clone());
    }
    if let Some(dir) = std::env::var_os("ROLLCALL_MODELS") {
        return Ok(PathBuf::from(dir));
    }
    find_upwards(Path::new("models/manifest.toml"))
        .or_else(|| find_upwards(Path::new(PREFIX_MODELS)))
        .and_then(|manifest| manifest.parent().map(Path::to_path_buf))
        .or_else(|| {
            let system = PathBuf::from(SYSTEM_MODELS);
            system.exists().then_some(system)
        })
        .ok_or(VisionError::ModelsDirNotFound { fix: SETUP_COMMAND })
}

/// Reads a model file and checks its sha256 against the manifest before anything runs it.
pub fn read_verified(dir: &Path, model: &ModelFile<'_>) -> Result<Vec<u8>, VisionError> {
    let path = dir.join(model.file);
    let bytes = std::fs::read(&path).map_err(|source| VisionError::ModelMissing {
        path: path.clone(),
        source,
        fix: SETUP_COMMAND,
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != model.sha256 {
        return Err(VisionError::ModelChecksum {
            path,
            expected: model.sha256.to_owned(),
            actual,
            fix: SETUP_COMMAND,
        });
    }
    Ok(bytes)
}

/// Builds an optimised CPU session from verified model bytes.
pub fn session(
    environment: &Environment,
    model_name: &str,
    bytes: &[u8],
    options: &RuntimeOptions,
) -> Result<Session, VisionError> {
    let fail = |e: &dyn std::fmt::Display| VisionError::Session {
        model: model_name.to_owned(),
        reason: e.to_string(),
    };
    let settings = SessionSettings::from_env();
    let mut builder = Session::builder(environment).map_err(|e| fail(&e))?;
    builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| fail(&e))?;
    // Each session has its own thread pool. With spinning on, a session's idle threads keep
    // spinning after its run while the next stage's session runs on the same two cores: detect
    // then embed took ~30 ms longer than the two apart (docs/PERFORMANCE.md).
    if !settings.spinning {
        builder = builder
            .with_intra_op_spinning(false)
            .map_err(|e| fail(&e))?;
    }
    // Subnormal floats as zero in the session's threads. Intel cores take a microcode assist on
    // every subnormal operand (the embedder's file with 8,938 subnormal weights ran ~5x slower on
    // a Xeon); fetch.py now flushes such weights, and this covers subnormal activations and any
    // model that still has some. ONNX Runtime applies it to the session's pool threads, and to the
    // thread building the first session of the process (once). `ROLLCALL_ORT_DAZ=0` turns it off
    // for comparison; figures in docs/PERFORMANCE.md ("Where a benchmark ran").
    if settings.denormals_as_zero {
        builder = builder.with_flush_to_zero().map_err(|e| fail(&e))?;
    }
    if options.intra_threads > 0 {
        builder = builder
            .with_intra_threads(options.intra_threads)
            .map_err(|e| fail(&e))?;
    }
    builder = builder
        .with_memory_pattern(settings.memory_pattern)
        .map_err(|e| fail(&e))?;
    let cpu = ort::ep::CPU::default()
        .with_arena_allocator(settings.arena)
        .build();
    // The GPU providers first, each refusing loudly (a missing CUDA library is an error here, not
    // a silent CPU session); CPU takes what they do not.
    let providers = match resolve(options.provider)? {
        Provider::Cpu => vec![cpu],
        Provider::Cuda => vec![ort::ep::CUDA::default().build().error_on_failure(), cpu],
        Provider::Tensorrt => vec![
            ort::ep::TensorRT::default()
                .with_engine_cache(true)
                // Engines are built on the device at the first start and kept on the data volume.
                .with_engine_cache_path(
                    std::env::var_os("ROLLCALL_TRT_CACHE")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| std::env::temp_dir().join("rollcall-trt-cache"))
                        .display()
                        .to_string(),
                )
                .build()
                .error_on_failure(),
            ort::ep::CUDA::default().build(),
            cpu,
        ],
    };
    builder = builder
        .with_execution_providers(providers)
        .map_err(|e| fail(&e))?;
    builder.commit_from_memory(bytes).map_err(|e| fail(&e))
}

/// The session settings that change speed or memory, each with an environment override for
/// benchmarks' comparisons, read in one place so that a banner says what the sessions did.
///
/// Memory: the CPU arena stays on: without it every tensor goes through malloc, whose peak varies
/// from run to run and climbs over frames (fragmentation), for no CPU saving. Memory patterns are
/// off: each input shape gets one planned block after its first run, taken from the arena beside
/// what that run left there, so the peak grows over a burst (31 faces embed in batches of 8 and
/// 7), for no measurable time; the teacher screen peaks at 137 MiB after a 30-face capture instead
/// of 178 (docs/PERFORMANCE.md, "Memory").
struct SessionSettings {
    /// `ROLLCALL_ORT_SPIN` set: intra-op threads spin between runs.
    spinning: bool,
    /// Off only with `ROLLCALL_ORT_DAZ=0`.
    denormals_as_zero: bool,
    /// `ROLLCALL_ORT_ARENA=on|off`.
    arena: bool,
    /// `ROLLCALL_ORT_MEM_PATTERN=on|off`.
    memory_pattern: bool,
}

impl SessionSettings {
    fn from_env() -> SessionSettings {
        let switch = |name: &str, default: bool| match std::env::var(name).as_deref() {
            Ok("on") => true,
            Ok("off") => false,
            _ => default,
        };
        SessionSettings {
            spinning: std::env::var_os("ROLLCALL_ORT_SPIN").is_some(),
            denormals_as_zero: std::env::var_os("ROLLCALL_ORT_DAZ").is_none_or(|v| v != "0"),
            arena: switch("ROLLCALL_ORT_ARENA", true),
            memory_pattern: switch("ROLLCALL_ORT_MEM_PATTERN", false),
        }
    }
}

/// `OrtGetApiBase()->GetVersionString()` of the library at `path`, e.g. "1.19.2". ort does not
/// expose it; opening the library again only takes another reference to the loaded copy.
fn library_version(path: &Path) -> Option<String> {
    /// `OrtApiBase` of onnxruntime_c_api.h: two function pointers, stable since 1.0.
    #[repr(C)]
    struct ApiBase {
        _get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
    }
    // SAFETY: the file is the ONNX Runtime library ort loads (its path, canonical); the symbol's
    // type is the C API's, and the version string is static and NUL-terminated.
    unsafe {
        let library = libloading::Library::new(path).ok()?;
        let api_base: libloading::Symbol<unsafe extern "C" fn() -> *const ApiBase> =
            library.get(b"OrtGetApiBase\0").ok()?;
        let base = api_base();
        if base.is_null() {
            return None;
        }
        let version = ((*base).get_version_string)();
        if version.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(version)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// The loaded ONNX Runtime and the session settings that change its speed, in one line, for
/// benchmark banners: e.g. `ONNX Runtime 1.19.2 (libonnxruntime.so.1.19.2, git-commit-id=...),
/// CPU execution provider, denormals as zero on, intra-op spinning off`.
pub fn describe() -> Result<String, VisionError> {
    environment()?;
    let path = library_path().and_then(|p| p.canonicalize().ok());
    let file = path
        .as_ref()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // The library says its version itself; a packaged copy is named plain `libonnxruntime.so`.
    let version = path
        .as_deref()
        .and_then(library_version)
        .or_else(|| file.strip_prefix("libonnxruntime.so.").map(str::to_owned))
        .unwrap_or_else(|| "(version unknown)".to_owned());
    let commit = ort::info()
        .split(", ")
        .find(|part| part.starts_with("git-commit-id="))
        .unwrap_or("git-commit-id unknown");
    let on_off = |on: bool| if on { "on" } else { "off" };
    let settings = SessionSettings::from_env();
    Ok(format!(
        "ONNX Runtime {version} ({file}, {commit}), CPU execution provider, denormals as zero {}, intra-op spinning {}, arena {}, memory patterns {}",
        on_off(settings.denormals_as_zero),
        on_off(settings.spinning),
        on_off(settings.arena),
        on_off(settings.memory_pattern),
    ))
}
