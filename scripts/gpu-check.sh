#!/usr/bin/env bash
# gpu-check.sh: run the Golden/Generation tests and the bench on an NVIDIA GPU whose machine has PyTorch but no internet,
# no NuGet and no .NET SDK.
#
#   scripts/gpu-check.sh prepare [--out FILE] [--torchsharp-git DIR] [--torchsharp-commit SHA]
#       Here, where the SDK and the package mirror are: one archive (at most 64 MiB) holding TorchSharp v0.107.0's native
#       sources (src/Native, from a fetched snapshot, never committed), framework-dependent publishes of the Inference tests
#       (with Jamba.TestRunner, a console xunit runner that needs no SDK) and of the jamba CLI, a .NET runtime
#       (Microsoft.NETCore.App + Microsoft.AspNetCore.App, no SDK), the reference fixtures, and this script.
#   scripts/gpu-check.sh run ARCHIVE [--work DIR] [--cpu-smoke] [--skip-tests] [--skip-bench] [--jobs N]
#       On the GPU machine: checks nvidia-smi and torch.cuda, builds libLibTorchSharp.so from the carried sources against the
#       installed PyTorch's libtorch (cmake, torch.utils.cmake_prefix_path), runs the Golden/Generation tests with
#       JAMBA_TEST_DEVICE=cuda (fp32 and bf16) and `jamba bench --preset bench --device cuda`, samples the device memory, and
#       writes WORK/summary.txt. --cpu-smoke does everything up to the GPU instead, on a machine without one: the carried
#       runtime and apps run on the CPU with the NuGet libtorch-cpu and TorchSharp's own libLibTorchSharp.so from
#       ~/.nuget/packages (no cmake build, no CUDA).
#
# Environment: GPU_CHECK_TEST_CLASSES (space-separated test classes; default "GoldenTests GenerationTests DevicePathTests"),
# GPU_CHECK_BENCH_ARGS (extra `jamba bench` arguments), GPU_CHECK_MAX_MIB (archive limit, default 64),
# CMAKE_BUILD_PARALLEL_LEVEL / --jobs (native build jobs, default nproc), PYTHON (default python3).
set -euo pipefail

readonly TORCHSHARP_VERSION=0.107.0
# dotnet/TorchSharp has no v0.107.0 tag in the snapshot: this is the commit that sets build/BranchInfo.props to 0.107.0 and adds
# its release notes (the head of main when 0.107.0 was published); its src/Native exports exactly the THS* symbols of the
# package's libLibTorchSharp.so (checked when this script was written: 1164 of 1164, plus 4 declared but never defined).
readonly TORCHSHARP_COMMIT_DEFAULT=c20b6a1cc574d690707638a488d2583f3b8b983f
readonly LIBTORCH_VERSION=2.10.0 # what TorchSharp 0.107.0 is built and tested against (libtorch-cpu / libtorch-cuda-12.8 2.10.0.0)
readonly MAX_MIB=${GPU_CHECK_MAX_MIB:-64}

die() { echo "gpu-check: error: $*" >&2; exit 1; }
say() { echo "gpu-check: $*" >&2; }
warn() { echo "gpu-check: WARNING: $*" >&2; }
repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

usage() {
    sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------------------------------------------------------------------
# prepare (here)
# ---------------------------------------------------------------------------------------------------------------------------

# Identical files under $1 become hard links of one another, so tar stores each content once (the two publishes share most
# of their assemblies).
dedupe_hardlinks() {
    local root=$1
    local -A first=()
    local f sum
    while IFS= read -r -d '' f; do
        sum=$(sha256sum "$f" | cut -d' ' -f1)
        if [[ -n ${first[$sum]:-} ]]; then
            ln -f "${first[$sum]}" "$f"
        else
            first[$sum]=$f
        fi
    done < <(find "$root" -type f -size +4k -print0 | sort -z)
}

# The publish of project $1 into $2: framework-dependent, linux-x64, no apphost (started as `dotnet X.dll`), and none of the
# NuGet libtorch binaries: libtorch comes from the GPU machine's PyTorch, libLibTorchSharp.so is built there.
publish() {
    local project=$1 out=$2
    say "publishing $project"
    nice dotnet publish "$project" -c Release -r linux-x64 --self-contained false -p:UseAppHost=false \
        -p:GenerateDocumentationFile=false -p:DebugType=none -o "$out" -nologo -v:q >&2 \
        || die "dotnet publish $project failed"
    # libtorch-cpu-linux-x64's natives (libtorch_cpu.so alone is 440 MiB) and TorchSharp's prebuilt libLibTorchSharp.so: the
    # host does not require the native assets that deps.json lists to exist (the apps start without them: run --cpu-smoke).
    find "$out" -maxdepth 1 -type f \( -name 'libtorch*.so*' -o -name 'libc10*.so*' -o -name 'libgomp*.so*' \
        -o -name 'libshm.so' -o -name 'libLibTorchSharp.so' -o -name 'libaoti_custom_ops.so' -o -name 'libbackend_with_compiler.so' \
        -o -name 'libjitbackend_test.so' -o -name 'libnnapi_backend.so' -o -name '*.dbg' -o -name '*.pdb' -o -name '*.xml' \) -delete
    rm -rf "$out/CodeCoverage" "$out/runtimes"
}

cmd_prepare() {
    local root out git_dir commit
    root=$(repo_root)
    out="$root/.gpu-check/jamba-gpu-check.tar.xz"
    git_dir=${TORCHSHARP_GIT:-/work/.mirror/dotnet+TorchSharp/repo}
    commit=${TORCHSHARP_COMMIT:-$TORCHSHARP_COMMIT_DEFAULT}
    while (($#)); do
        case $1 in
            --out) out=$(realpath -m "$2"); shift 2 ;;
            --torchsharp-git) git_dir=$2; shift 2 ;;
            --torchsharp-commit) commit=$2; shift 2 ;;
            *) die "prepare: unexpected argument '$1' (expected --out FILE, --torchsharp-git DIR, --torchsharp-commit SHA)" ;;
        esac
    done
    command -v dotnet >/dev/null || die "prepare needs the .NET SDK (dotnet) on PATH"
    command -v xz >/dev/null || die "prepare needs xz"
    [[ -d $git_dir ]] || die "no TorchSharp git directory at '$git_dir': bring github:dotnet/TorchSharp in first (a bare snapshot; set TORCHSHARP_GIT)"
    git --git-dir="$git_dir" cat-file -e "$commit^{commit}" 2>/dev/null || die "commit $commit is not in $git_dir"
    local minor
    minor=$(git --git-dir="$git_dir" show "$commit:build/BranchInfo.props" | sed -n 's:.*<MinorVersion>\(.*\)</MinorVersion>.*:\1:p')
    [[ "0.$minor.0" == "$TORCHSHARP_VERSION" ]] || die "commit $commit of $git_dir is TorchSharp 0.$minor, expected $TORCHSHARP_VERSION"

    local work="$root/.gpu-check/stage"
    rm -rf "$work"
    local top="$work/jamba-gpu-check"
    mkdir -p "$top/torchsharp" "$top/repo/tests" "$top/shared"

    say "exporting src/Native of TorchSharp $TORCHSHARP_VERSION ($commit)"
    git --git-dir="$git_dir" archive "$commit" src/Native LICENSE.txt | tar -x -C "$top/torchsharp"
    echo "$commit" >"$top/torchsharp/COMMIT"

    # The apps run under repo/, beside a marker Jamba.sln: the tests find the repository root (RepositoryPaths) by it, and the
    # shared fixtures at repo/../shared/fixtures, as in a checkout.
    : >"$top/repo/Jamba.sln"
    (cd "$root" && publish tests/Jamba.Inference.Tests "$top/repo/tests/Jamba.Inference.Tests" \
        && publish src/Jamba.Cli "$top/repo/cli" && publish tests/Jamba.TestRunner "$work/runner")
    cp "$work/runner/Jamba.TestRunner.dll" "$top/repo/tests/Jamba.Inference.Tests/"
    local fixtures="$root/../shared/fixtures"
    if [[ -d $fixtures/models ]]; then
        mkdir -p "$top/shared/fixtures"
        cp -r "$fixtures/models" "$top/shared/fixtures/"
        [[ -f $fixtures/README.md ]] && cp "$fixtures/README.md" "$top/shared/fixtures/"
    else
        warn "no reference fixtures at $fixtures/models: the Golden/Generation theories will have no rows"
    fi

    # The runtime: the host (dotnet, host/fxr) and the shared frameworks the publishes name, at the version installed here.
    local dotnet_root fx
    dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
    fx=$(dotnet --list-runtimes | awk '$1 == "Microsoft.NETCore.App" && $2 ~ /^10\./ { v = $2 } END { print v }')
    [[ -n $fx ]] || die "no Microsoft.NETCore.App 10.x runtime in $dotnet_root"
    [[ -d $dotnet_root/shared/Microsoft.AspNetCore.App/$fx ]] || die "no Microsoft.AspNetCore.App $fx in $dotnet_root (the apps reference it through Jamba.Server)"
    say "carrying the .NET runtime $fx from $dotnet_root"
    mkdir -p "$top/dotnet/shared" "$top/dotnet/host/fxr"
    cp "$dotnet_root/dotnet" "$top/dotnet/"
    local hostfxr f
    for f in LICENSE.txt ThirdPartyNotices.txt; do
        if [[ -f $dotnet_root/$f ]]; then cp "$dotnet_root/$f" "$top/dotnet/"; fi
    done
    hostfxr=$(find "$dotnet_root/host/fxr" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n1)
    [[ -n $hostfxr ]] || die "no host/fxr in $dotnet_root"
    cp -r "$dotnet_root/host/fxr/$hostfxr" "$top/dotnet/host/fxr/"
    for name in Microsoft.NETCore.App Microsoft.AspNetCore.App; do
        mkdir -p "$top/dotnet/shared/$name"
        cp -r "$dotnet_root/shared/$name/$fx" "$top/dotnet/shared/$name/"
    done
    find "$top/dotnet" -name '*.dbg' -delete
    cp "$root/scripts/gpu-check.sh" "$top/gpu-check.sh"
    { echo "TorchSharp $TORCHSHARP_VERSION native sources: $commit"; echo "Jamba.NET: $(git -C "$root" rev-parse HEAD)$(git -C "$root" diff --quiet HEAD -- || echo ' (with local changes)')"; \
      echo ".NET runtime: $fx"; echo "prepared: $(date -u +%FT%TZ)"; } >"$top/MANIFEST"

    dedupe_hardlinks "$top"
    say "uncompressed: $(du -sh "$top" | cut -f1); compressing (xz -9)"
    mkdir -p "$(dirname "$out")"
    tar -C "$work" -cf - jamba-gpu-check | nice xz -9e -T2 >"$out.tmp"
    mv "$out.tmp" "$out"
    local bytes limit=$((MAX_MIB * 1024 * 1024))
    bytes=$(stat -c %s "$out")
    say "archive $out: $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB; limit $MAX_MIB MiB)"
    ((bytes <= limit)) || die "the archive is $bytes bytes, over the $MAX_MIB MiB limit"
    rm -rf "$work"
    echo "$out"
}

# ---------------------------------------------------------------------------------------------------------------------------
# run (the GPU machine; --cpu-smoke: here)
# ---------------------------------------------------------------------------------------------------------------------------

# Builds libLibTorchSharp.so from TorchSharp's src/Native ($1) in $2 against the PyTorch whose cmake prefix is $3, libraries
# are in $4 and headers in $7 ($5: 1 for the C++11 ABI; $6: jobs) and prints its path. First TorchSharp's own CMakeLists (with
# -Werror dropped: a newer compiler than TorchSharp's CI warns about libtorch's headers); when that cannot configure (a CUDA
# PyTorch's TorchConfig.cmake insists on a CUDA toolkit, which pip installs do not have), the same sources and flags compiled
# directly against the CPU headers and libraries: TorchSharp's released libLibTorchSharp.so is such a CPU build (it needs
# libtorch, libtorch_cpu and libc10 only) and runs on CUDA because TorchSharp loads libtorch_cuda itself.
build_native() {
    local sources=$1 dir=$2 cmake_prefix=$3 libdir=$4 abi=$5 jobs=$6 inc=$7
    rm -rf "$dir"
    mkdir -p "$dir/src" "$dir/build"
    cp -r "$sources/." "$dir/src/"
    sed -i 's/^\( *\)add_definitions(-Werror)/\1# add_definitions(-Werror) dropped by gpu-check.sh/' "$dir/src/CMakeLists.txt"
    if command -v cmake >/dev/null; then
        say "building libLibTorchSharp.so with cmake against $cmake_prefix ($jobs jobs)"
        if (cd "$dir/build" && cmake "$dir/src" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$cmake_prefix" \
                -DLIBTORCH_PATH="$cmake_prefix/Torch" -DLIBTORCH_ARCH=x64 -DCMAKE_BUILD_RPATH="$libdir") >"$dir/cmake-configure.log" 2>&1; then
            if (cd "$dir/build" && cmake --build . -j "$jobs") >"$dir/cmake-build.log" 2>&1; then
                find "$dir/build" -name libLibTorchSharp.so -type f | head -n1
                return 0
            fi
            { grep -m 20 -E 'error' "$dir/cmake-build.log" || tail -n 30 "$dir/cmake-build.log"; } >&2
            warn "the cmake build failed (log: $dir/cmake-build.log); trying the direct compile"
        else
            tail -n 15 "$dir/cmake-configure.log" >&2
            warn "cmake could not configure against this PyTorch (log: $dir/cmake-configure.log); trying the direct compile"
        fi
    else
        warn "cmake not found; compiling directly"
    fi
    [[ -f $inc/torch/torch.h || -f $inc/torch/csrc/api/include/torch/torch.h ]] || { echo "no libtorch headers under $inc" >&2; return 1; }
    say "compiling libLibTorchSharp.so directly against $inc ($jobs jobs)"
    local flags=(-O2 -DNDEBUG -fPIC -fvisibility=hidden -fstack-protector-strong -Wno-unused-local-typedef
        "-D_GLIBCXX_USE_CXX11_ABI=$abi" -D__LINUX__ -D_NO_ASYNCRTIMP -D_NO_PPLXIMP
        -I"$dir/src" -I"$dir/src/LibTorchSharp" -I"$inc" -I"$inc/torch/csrc/api/include")
    mkdir -p "$dir/obj"
    local f failed=0
    : >"$dir/compile.log"
    # shellcheck disable=SC2016 # the inner sh script expands its own arguments
    for f in "$dir"/src/LibTorchSharp/*.cpp "$dir"/src/LibTorchSharp/*.c; do
        [[ -f $f ]] && printf '%s\0' "$f"
    done | xargs -0 -P "$jobs" -I{} sh -c '
        f=$1; shift; o="$0/obj/$(basename "$f").o"
        case $f in *.c) cc -O2 -fPIC -fvisibility=hidden -c "$f" -o "$o" ;; *) c++ -std=c++17 "$@" -c "$f" -o "$o" ;; esac \
            >>"$0/compile.log" 2>&1 || { echo "failed: $f" >>"$0/compile.log"; exit 255; }' "$dir" {} "${flags[@]}" || failed=1
    if ((failed)); then
        { grep -m 20 -E 'error|failed:' "$dir/compile.log" || tail -n 30 "$dir/compile.log"; } >&2
        return 1
    fi
    c++ -shared -o "$dir/build/libLibTorchSharp.so" "$dir"/obj/*.o -Wl,-Bsymbolic -Wl,-Bsymbolic-functions -Wl,--build-id=sha1 \
        -L"$libdir" -Wl,-rpath,"$libdir" -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 >>"$dir/compile.log" 2>&1 \
        || { tail -n 30 "$dir/compile.log" >&2; return 1; }
    echo "$dir/build/libLibTorchSharp.so"
}

cmd_run() {
    (($#)) || die "run needs the archive made by 'prepare'"
    local archive=$1; shift
    local work="" cpu_smoke=0 skip_tests=0 skip_bench=0 jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
    while (($#)); do
        case $1 in
            --work) work=$(realpath -m "$2"); shift 2 ;;
            --cpu-smoke) cpu_smoke=1; shift ;;
            --skip-tests) skip_tests=1; shift ;;
            --skip-bench) skip_bench=1; shift ;;
            --jobs) jobs=$2; shift 2 ;;
            *) die "run: unexpected argument '$1' (expected --work DIR, --cpu-smoke, --skip-tests, --skip-bench, --jobs N)" ;;
        esac
    done
    [[ -f $archive ]] || die "no archive at '$archive'"
    [[ -n $work ]] || work=$(mktemp -d "${TMPDIR:-/tmp}/jamba-gpu-check.XXXXXX")
    mkdir -p "$work"
    local summary="$work/summary.txt"
    : >"$summary"
    note() { echo "$*" >>"$summary"; } # the summary is printed (stdout) at the end; progress goes to stderr

    say "unpacking $archive into $work"
    tar -C "$work" -xJf "$archive"
    local top="$work/jamba-gpu-check"
    local dn="$top/dotnet/dotnet"
    export DOTNET_ROOT="$top/dotnet" DOTNET_MULTILEVEL_LOOKUP=0 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
    "$dn" --info >"$work/dotnet-info.txt" 2>&1 || { cat "$work/dotnet-info.txt" >&2; die "the carried runtime does not start ($dn --info)"; }
    note "== Jamba.NET GPU check ($(date -u +%FT%TZ), $(hostname))"
    sed 's/^/   /' "$top/MANIFEST" >>"$summary"
    note "   carried runtime: $(grep -m1 -E '^ *Version:' "$work/dotnet-info.txt" | awk '{print $2}') ($dn)"

    local tests_dir="$top/repo/tests/Jamba.Inference.Tests" cli_dir="$top/repo/cli"
    local device libtorch_dir native_lib
    local py=${PYTHON:-python3}
    if ((cpu_smoke)); then
        device=cpu
        local nuget=${NUGET_PACKAGES:-$HOME/.nuget/packages}
        libtorch_dir="$nuget/libtorch-cpu-linux-x64/$LIBTORCH_VERSION/runtimes/linux-x64/native"
        native_lib="$nuget/torchsharp/$TORCHSHARP_VERSION/runtimes/linux-x64/native/libLibTorchSharp.so"
        [[ -f $libtorch_dir/libtorch_cpu.so && -f $native_lib ]] \
            || die "--cpu-smoke needs libtorch-cpu-linux-x64 $LIBTORCH_VERSION and torchsharp $TORCHSHARP_VERSION in $nuget (restore the solution once)"
        note "-- CPU smoke: no GPU; libtorch from $libtorch_dir, TorchSharp's prebuilt $native_lib (the cmake build and CUDA are not exercised)"
    else
        device=cuda
        command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this is not an NVIDIA GPU machine (use --cpu-smoke to check the rest)"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/   GPU: /' >>"$summary"
        local torch_info
        torch_info=$("$py" - <<'EOF'
import os, torch, torch.utils
print(torch.__version__)
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
print(os.path.join(os.path.dirname(torch.__file__), "include"))
print(torch.utils.cmake_prefix_path)
print(torch.version.cuda or "")
print(int(torch.cuda.is_available()))
print(int(torch.compiled_with_cxx11_abi()))
EOF
) || die "$py cannot import torch: PyTorch must be installed for $py (or set PYTHON)"
        local torch_version torch_include cmake_prefix torch_cuda cuda_ok cxx11
        { read -r torch_version; read -r libtorch_dir; read -r torch_include; read -r cmake_prefix; read -r torch_cuda; read -r cuda_ok; read -r cxx11; } <<<"$torch_info"
        note "   PyTorch $torch_version (CUDA ${torch_cuda:-none}) at $libtorch_dir"
        [[ $cuda_ok == 1 ]] || die "torch.cuda.is_available() is False for PyTorch $torch_version: no usable CUDA device or a CPU-only build"
        [[ ${torch_version%%+*} == "$LIBTORCH_VERSION" ]] \
            || warn "TorchSharp $TORCHSHARP_VERSION targets libtorch $LIBTORCH_VERSION; PyTorch here is $torch_version (trying anyway: the build may fail on changed APIs)"
        [[ $cxx11 == 1 ]] || warn "this PyTorch uses the pre-C++11 ABI (_GLIBCXX_USE_CXX11_ABI=0); TorchSharp's CMakeLists forces 1, so the cmake build may fail to link (the direct compile follows PyTorch)"
        command -v c++ >/dev/null || die "no C++ compiler (c++) found (needed to build libLibTorchSharp.so)"
        local t0=$SECONDS
        native_lib=$(build_native "$top/torchsharp/src/Native" "$work/torchsharp-build" "$cmake_prefix" "$libtorch_dir" "$cxx11" "$jobs" "$torch_include") \
            || die "could not build libLibTorchSharp.so (logs: $work/torchsharp-build/*.log)"
        note "   built $native_lib in $((SECONDS - t0)) s"
    fi

    # TorchSharp loads "LibTorchSharp" next to TorchSharp.dll and libtorch_cpu / libtorch_cuda by name: the built library goes
    # into each app folder, libtorch is found through LD_LIBRARY_PATH (the published apps carry none of its files).
    cp "$native_lib" "$tests_dir/"
    cp "$native_lib" "$cli_dir/"
    export LD_LIBRARY_PATH="$libtorch_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export JAMBA_NATIVE_CACHE="$work/native-cache" JAMBA_CACHE="$work/jamba-cache"

    local status=0
    if ((!skip_tests)); then
        local classes
        read -r -a classes <<<"${GPU_CHECK_TEST_CLASSES:-GoldenTests GenerationTests DevicePathTests}"
        local filters=()
        for c in "${classes[@]}"; do filters+=(--class "Jamba.Inference.Tests.$c"); done
        note "-- tests: ${classes[*]} with JAMBA_TEST_DEVICE=$device (the CPU-kernel rows run on the CPU, the device path on $device)"
        local log="$work/tests.log"
        say "running the tests (log: $log)"
        set +e
        (cd "$tests_dir" && JAMBA_TEST_DEVICE=$device "$dn" exec --depsfile Jamba.Inference.Tests.deps.json \
            --runtimeconfig Jamba.Inference.Tests.runtimeconfig.json Jamba.TestRunner.dll Jamba.Inference.Tests.dll "${filters[@]}") >"$log" 2>&1
        local rc=$?
        set -e
        grep -E '^(PASS|FAIL|SKIP|ERROR) ' "$log" | sed 's/^/   /' >>"$summary"
        local fp32_pass fp32_fail bf16_pass bf16_fail
        fp32_pass=$(grep -E '^PASS ' "$log" | grep -v -c 'Bf16' || true)
        fp32_fail=$(grep -E '^FAIL ' "$log" | grep -v -c 'Bf16' || true)
        bf16_pass=$(grep -E '^PASS ' "$log" | grep -c 'Bf16' || true)
        bf16_fail=$(grep -E '^FAIL ' "$log" | grep -c 'Bf16' || true)
        note "   fp32: $fp32_pass passed, $fp32_fail failed; bf16: $bf16_pass passed, $bf16_fail failed"
        grep -E 'largest \|Δlogit\|' "$log" | sed 's/^ */   /' | sort -u >>"$summary" || true
        note "   $(grep -E '^Jamba.TestRunner: .* passed' "$log" || echo "runner exit code $rc: see $log")"
        if ((rc != 0)); then
            grep -E -A4 '^FAIL ' "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
            status=1
        fi
    fi

    if ((!skip_bench)); then
        note "-- bench: jamba bench --preset bench --device $device ${GPU_CHECK_BENCH_ARGS:-}"
        local blog="$work/bench.log" smi_log="$work/nvidia-smi.csv" smi_pid=""
        say "running the bench (log: $blog)"
        if [[ $device == cuda ]]; then
            nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader,nounits -lms 250 >"$smi_log" 2>/dev/null &
            smi_pid=$!
        fi
        set +e
        # shellcheck disable=SC2086 # GPU_CHECK_BENCH_ARGS is a list of words
        (cd "$cli_dir" && "$dn" jamba.dll bench --preset bench --device "$device" ${GPU_CHECK_BENCH_ARGS:-}) >"$blog" 2>&1
        local brc=$?
        set -e
        [[ -n $smi_pid ]] && { kill "$smi_pid" 2>/dev/null || true; wait "$smi_pid" 2>/dev/null || true; }
        sed 's/^/   /' "$blog" >>"$summary"
        if [[ -s $smi_log ]]; then
            note "   device memory (nvidia-smi, sampled every 250 ms during the bench): peak $(awk -F', *' '$1 > m { m = $1; t = $2 } END { print m " MiB of " t " MiB" }' "$smi_log")"
        fi
        if [[ $device == cuda ]]; then
            nvidia-smi --query-gpu=memory.used,memory.total --format=csv | sed 's/^/   after: /' >>"$summary"
        fi
        ((brc == 0)) || { tail -n 30 "$blog" >&2; note "   bench failed with exit code $brc"; status=1; }
    fi

    cat "$summary"
    say "summary: $summary (logs beside it); $( ((status == 0)) && echo "all passed" || echo "FAILURES above")"
    return $status
}

case ${1:-} in
    prepare) shift; cmd_prepare "$@" ;;
    run) shift; cmd_run "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
