#!/usr/bin/env bash
# One prepared GPU run (issue 20): r1-480p, the kernels and toon-128 training measured by ONE
# command of about 6 minutes on the device machine (an H200; torch 2.11 + triton 3.6, Python
# 3.12, no network). docs/gpu-run.md has the exact `run` call and how to read what comes back.
#
#   bash scripts/gpu_bench.sh prepare   # here, once, with network: .carry/bench (ignored), ~24 MB
#   bash scripts/gpu_bench.sh           # there: one JSON per step into $OUT (default out/gpu)
#
# Steps, each under its own `timeout`; a step that fails is recorded and the next one runs:
#   setup            carried wheels, ffmpeg and espeak-ng where missing; the project on PYTHONPATH  20 s
#   env              env.json: python, torch, triton, GPU, nvidia-smi, ffmpeg, espeak-ng          30 s
#   kernels          kernels.json: benchmarks/bench_kernels.py on the preset's shapes + ceilings   75 s
#   bench_triton     bench_triton.json: flowact bench, FLOWACT_KERNELS=triton                      75 s
#   bench_reference  bench_reference.json: the same with FLOWACT_KERNELS=reference                 75 s
#   flat             flat.json: benchmarks/bench_flat.py, 60 s: p50/p99, first vs last 10 s       110 s
#   train            train.json: a few steps of every training stage of toon-128, steps/s         140 s
# The timeouts sum to 525 s (8 min 45 s); expected on an H200: about 6 minutes.
# summary.json (rewritten after every step: ok, rc, seconds, headline figures, the log's tail
# for a failure) and log.txt (every step's output): 8 files, the most $OUT brings back.
#
# Settings (environment): DEVICE (cuda), PRESET (r1-480p), BENCH_SECONDS (10), FLAT_SECONDS (60),
# FLAT_WINDOW (10), FLAT_BUDGET (75 wall seconds for the measured render), KERNEL_SHAPES
# (the preset's on CUDA, else tiny), BENCH_KERNELS (triton on CUDA, else auto: the interpreter
# is far too slow for a whole render), TRAIN_PRESET (toon-128), TRAIN_STEPS (6), TRAIN_BATCH
# (empty: the recipe's per stage), TRAIN_STAGES, TRAIN_STAGE_BUDGET (15 s), CACHE_CLIPS (8),
# CACHE_SECONDS (4), THREADS (CPU threads), ONLY (a subset of the step names, for a rerun),
# T_SETUP .. T_TRAIN (the timeouts above), CARRY (.carry/bench), FORCE_CARRY=1 (the carried
# ffmpeg and espeak-ng even where the machine has its own), PYTHON (python3). Not SECONDS:
# that is bash's own clock. The exit status is 0 only when every step that ran is ok.
# Dry run on CPU, the whole script in well under a minute (tests/test_gpu_bench.py runs it):
#   DEVICE=cpu PRESET=tests/data/tiny.yaml TRAIN_PRESET=<tiny plus a lips: section> \
#   BENCH_SECONDS=1 FLAT_SECONDS=3 FLAT_WINDOW=1 TRAIN_STEPS=2 TRAIN_BATCH=1 CACHE_CLIPS=2 \
#   CACHE_SECONDS=2 THREADS=1 OUT=/tmp/gpu-dry bash scripts/gpu_bench.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
CARRY=${CARRY:-$ROOT/.carry/bench}
case $CARRY in /*) ;; *) CARRY=$ROOT/$CARRY ;; esac

T_SETUP=${T_SETUP:-20} T_ENV=${T_ENV:-30} T_KERNELS=${T_KERNELS:-75} T_BENCH=${T_BENCH:-75}
T_FLAT=${T_FLAT:-110} T_TRAIN=${T_TRAIN:-140}

# -- prepare (here, with network): what the device machine lacks, small enough to travel -----
# The tree travels whole (tracked + untracked files, 64 MiB in all) and the bundled toon-128
# weights alone are 36 MB, so imageio-ffmpeg's 29.5 MB wheel does not fit beside them: its
# static ffmpeg (7.0.2, libx264 + aac) travels xz-compressed (21 MB) and flowact finds it
# through FLOWACT_FFMPEG. espeak-ng (the synthetic world's voice) travels as its library, libsonic,
# a stub libpcaudio (the real one pulls in PulseAudio, ALSA and X11; flowact only retrieves
# samples, AUDIO_OUTPUT_SYNCHRONOUS, so nothing in it is ever called) and the data of the
# world's languages only.
prepare() {
  set -e
  local dest=$CARRY
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$dest"
  rm -rf "$dest/wheels"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any -d "$dest/wheels" \
    "soundfile>=0.12" cffi pycparser "soxr>=0.3"
  if [ ! -s "$dest/ffmpeg.xz" ]; then
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux2014_x86_64 -d "$tmp" "imageio-ffmpeg==0.6.0"
    "$PY" - "$tmp"/imageio_ffmpeg-*.whl "$dest/ffmpeg.xz" <<'EOF'
import lzma, shutil, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if "/binaries/ffmpeg-" in n)
with z.open(name) as src, lzma.open(sys.argv[2] + ".tmp", "wb", preset=9 | lzma.PRESET_EXTREME) as dst:
    shutil.copyfileobj(src, dst)
shutil.move(sys.argv[2] + ".tmp", sys.argv[2])
print(f"ffmpeg.xz: {name}")
EOF
  fi
  (cd "$tmp" && apt-get download espeak-ng-data libespeak-ng1 libsonic0 >/dev/null 2>&1)
  for f in "$tmp"/*.deb; do dpkg -x "$f" "$tmp/root"; done
  local lib=$tmp/root/usr/lib/x86_64-linux-gnu es=$tmp/espeak
  mkdir -p "$es/lib" "$es/espeak-ng-data"
  cp -L "$lib/libespeak-ng.so.1" "$lib/libsonic.so.0" "$es/lib/"
  cat > "$tmp/pcaudio.c" <<'EOF'
/* Stand-in for libpcaudio.so.0: espeak-ng links it for playback, flowact never plays. */
#include <stddef.h>
struct audio_object;
struct audio_object *create_audio_device_object(const char *d, const char *a, const char *n) { return NULL; }
int audio_object_open(struct audio_object *o, int format, unsigned rate, unsigned char channels) { return -1; }
void audio_object_close(struct audio_object *o) {}
void audio_object_destroy(struct audio_object *o) {}
int audio_object_write(struct audio_object *o, const void *data, size_t bytes) { return -1; }
int audio_object_drain(struct audio_object *o) { return 0; }
int audio_object_flush(struct audio_object *o) { return 0; }
const char *audio_object_strerror(struct audio_object *o, int error) { return "no audio output (stub)"; }
EOF
  gcc -shared -fPIC -O2 -Wl,-soname,libpcaudio.so.0 -o "$es/lib/libpcaudio.so.0" "$tmp/pcaudio.c"
  local data=$lib/espeak-ng-data langs
  cp -r "$data"/phon* "$data/intonations" "$data/lang" "$data/voices" "$es/espeak-ng-data/"
  langs=$(PYTHONPATH=$ROOT/src "$PY" -c "from flowact.world.speech import LANGUAGES; print(' '.join(LANGUAGES))")
  for l in $langs; do cp "$data/${l}_dict" "$es/espeak-ng-data/"; done
  tar -C "$es" -cJf "$dest/espeak.tar.xz" lib espeak-ng-data
  # the carried espeak-ng must speak every voice of the world exactly as an installed one does
  mkdir -p "$tmp/check" && tar -C "$tmp/check" -xJf "$dest/espeak.tar.xz"
  local probe='
import hashlib, sys
import numpy as np
from flowact.world.speech import LANGUAGES, Voice, random_sentence, synthesize
h = hashlib.sha256()
for lang, bases in LANGUAGES.items():
    for base in bases:
        s = synthesize(random_sentence(np.random.default_rng(1), lang), Voice(lang, base + "+m3", 160, 50, 50))
        h.update(s.samples.tobytes())
maps = open("/proc/self/maps").read()
print(h.hexdigest()[:16], "pulse" if "libpulse" in maps else "no-pulse",
      next(l.split()[-1] for l in maps.splitlines() if "libespeak-ng" in l))'
  echo "espeak-ng carried: $(LD_LIBRARY_PATH=$tmp/check/lib ESPEAK_DATA_PATH=$tmp/check \
    PYTHONPATH=$ROOT/src "$PY" -c "$probe")"
  echo "espeak-ng system:  $(PYTHONPATH=$ROOT/src "$PY" -c "$probe" 2>&1 || echo none)"
  local tree carry_b
  tree=$(cd "$ROOT" && git ls-files -z -c -o --exclude-standard | xargs -0 stat -c %s 2>/dev/null |
    awk '{s+=$1} END {print s+0}')
  carry_b=$(du -sb "$dest" | cut -f1)
  ls -l "$dest" "$dest/wheels"
  awk -v t="$tree" -v c="$carry_b" 'BEGIN {printf "travels: tree %.1f MiB + %s %.1f MiB = %.1f of 64 MiB\n",
    t / 1048576, "carry", c / 1048576, (t + c) / 1048576; exit (t + c > 64 * 1048576)}' ||
    { echo "over the 64 MiB carry limit" >&2; return 1; }
}

# -- setup (there): writes $WORK/setup.env for the steps to source ----------------------------
# The project goes on PYTHONPATH, not `pip install -e .`: src/ plus kernels/ and presets/ under
# the names pyproject's package-dir gives them (flowact_kernels, flowact_presets), and a
# `flowact` command that calls the same entry point. Nothing is built or written into the
# image's Python, and the dry run here takes the very same path.
setup() {
  local work=$1 envf=$1/setup.env pp
  : > "$envf"
  mkdir -p "$work/pkgs" "$work/bin"
  ln -sfn "$ROOT/kernels" "$work/pkgs/flowact_kernels"
  ln -sfn "$ROOT/presets" "$work/pkgs/flowact_presets"
  printf '#!/bin/sh\nexec "%s" -c %s "$@"\n' "$PY" \
    "'import sys; from flowact.cli import main; sys.argv[0] = \"flowact\"; sys.exit(main())'" > "$work/bin/flowact"
  chmod +x "$work/bin/flowact"
  pp=$ROOT/src:$work/pkgs
  # carried wheels only where the packages are missing (they are py3.12 wheels: not for another Python)
  if ! "$PY" -c "import soundfile, soxr" 2>/dev/null; then
    if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" \
        "$CARRY"/wheels/*.whl && pp=$pp:$work/site && echo "setup: wheels $(cd "$CARRY/wheels" && echo *.whl)"
    else
      echo "setup: soundfile/soxr missing and no wheels in $CARRY/wheels" >&2
    fi
  fi
  echo "export PYTHONPATH=$pp\${PYTHONPATH:+:\$PYTHONPATH} PATH=$work/bin:\$PATH" >> "$envf"
  if [ -z "${FLOWACT_FFMPEG:-}" ] && [ -s "$CARRY/ffmpeg.xz" ] && { [ "${FORCE_CARRY:-0}" = 1 ] ||
      ! PYTHONPATH=$pp "$PY" -c "import imageio_ffmpeg; imageio_ffmpeg.get_ffmpeg_exe()" 2>/dev/null; }; then
    "$PY" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
      "$CARRY/ffmpeg.xz" "$work/ffmpeg" && chmod +x "$work/ffmpeg" &&
      echo "export FLOWACT_FFMPEG=$work/ffmpeg" >> "$envf" && echo "setup: ffmpeg from $CARRY/ffmpeg.xz"
  fi
  if [ -s "$CARRY/espeak.tar.xz" ] && { [ "${FORCE_CARRY:-0}" = 1 ] ||
      ! "$PY" -c "import ctypes; ctypes.CDLL('libespeak-ng.so.1')" 2>/dev/null; }; then
    mkdir -p "$work/espeak"
    "$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], \
**({'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}))" "$CARRY/espeak.tar.xz" "$work/espeak" &&
      echo "export LD_LIBRARY_PATH=$work/espeak/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \
        "ESPEAK_DATA_PATH=$work/espeak" >> "$envf" && echo "setup: espeak-ng from $CARRY/espeak.tar.xz"
  fi
}

case "${1:-}" in
  prepare) prepare; exit ;;
  _setup) setup "$2"; exit ;;
  "") ;;
  *) echo "usage: $0 [prepare]" >&2; exit 2 ;;
esac

# -- the run ---------------------------------------------------------------------------------
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-r1-480p}
cuda() { [ "${DEVICE%%:*}" = cuda ]; }
KERNEL_SHAPES=${KERNEL_SHAPES:-$(cuda && echo "$PRESET" || echo tiny)}
BENCH_KERNELS=${BENCH_KERNELS:-$(cuda && echo triton || echo auto)}
export PRESET KERNEL_SHAPES BENCH_KERNELS BENCH_SECONDS=${BENCH_SECONDS:-10}
export FLAT_SECONDS=${FLAT_SECONDS:-60} FLAT_WINDOW=${FLAT_WINDOW:-10} FLAT_BUDGET=${FLAT_BUDGET:-75}
export DEVICE TRAIN_PRESET=${TRAIN_PRESET:-toon-128} TRAIN_STEPS=${TRAIN_STEPS:-6} TRAIN_BATCH=${TRAIN_BATCH:-}
export TRAIN_STAGES=${TRAIN_STAGES:-vae cache pretrain decoder selfforce distill lips visemes}
export TRAIN_STAGE_BUDGET=${TRAIN_STAGE_BUDGET:-15} CACHE_CLIPS=${CACHE_CLIPS:-8} CACHE_SECONDS=${CACHE_SECONDS:-4}
export THREADS=${THREADS:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export ONLY=${ONLY:-}
OUT=${OUT:-$ROOT/out/gpu}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flowact-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LOG=$OUT/log.txt
: > "$LOG"
: > "$WORK/steps.jsonl"
cd "$ROOT"
threads=()
[ -n "$THREADS" ] && threads=(--threads "$THREADS")
T0=$(date +%s)

want() {  # setup: always
  [ -z "$ONLY" ] || [ "$1" = setup ] || [[ " $ONLY " == *" $1 "* ]]
}

summarize() {
  "$PY" - "$WORK/steps.jsonl" "$OUT" "$WORK" "$(($(date +%s) - T0))" <<'EOF'
import json, os, sys
from pathlib import Path
steps_file, out, work, wall = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])

def headline(name, d):
    """The few figures to read first; the step's JSON has the rest."""
    if name == "env":
        return {k: d.get(k) for k in ("gpu_name", "torch", "triton", "triton_kernels")}
    if name == "kernels":
        h = {r["op"]: f"x{r['speedup']:.2f} vs ref, {r['kernel_rate']:.4g} {r['unit']}, rel err {r['rel_err']:.1e}"
             for r in d["rows"]}
        att = next(r for r in d["rows"] if r["op"] == "bank_attention")
        h["bank_attention_vs_sdpa"] = f"x{att['sdpa_valid_precat'] / att['kernel_ms']:.2f}"
        h["ceilings"] = f"{d['ceilings']['copy_GB_s']:.4g} GB/s, {d['ceilings']['matmul_TFLOP_s']:.4g} TFLOP/s"
        return h
    if name.startswith("bench_"):
        lat = d["chunk_latency_ms"]
        return {"rtf": round(d["realtime_factor"], 3), "e2e_fps": round(d["e2e_fps"], 1),
                "generator_fps": round(d["generator_fps"], 1),
                "ttff_s": d["ttff_seconds"] and round(d["ttff_seconds"], 3),
                "chunk_ms_p50_p95": [lat["p50"], lat["p95"]],
                "halves_ms": [lat["first_half_median"], lat["second_half_median"]],
                "peak_mb": round(d["peak_memory_mb"]), "conditions": d["conditions"]}
    if name == "flat":
        lat, a, b = d["chunk_latency_ms"], d["first_window"], d["last_window"]
        return {"video_s": d["video_seconds"], "rtf": round(d["realtime_factor"], 3),
                "p50_p99": [lat["p50"], lat["p99"]],
                "first_p50_p99": [a["p50"], a["p99"]], "last_p50_p99": [b["p50"], b["p99"]],
                "last_over_first_p50": d["last_over_first_p50"], "memory_mb": d["memory_mb"],
                "stopped_by_budget": d["stopped_by_budget"]}
    if name == "train":
        def line(s):
            if not s.get("ok"):
                return f"FAILED: {s.get('error')}"
            if s["stage"] == "cache":
                return f"{s['clips_per_s']:.3g} clips/s ({s['clips']} clips of {s['clip_seconds']:g} s)"
            return (f"{s['compute_steps_per_s']:.3g} steps/s compute, {s['steps_per_s']:.3g} with data, "
                    f"batch {s['batch']} ({s['data']})"
                    + (f", peak {s['peak_cuda_mb']} MB" if s["peak_cuda_mb"] else ""))
        return {s["stage"]: line(s) for s in d["stages"]}
    return None

steps = []
for line in steps_file.read_text().splitlines():
    s = json.loads(line)
    s["ok"] = s["rc"] == 0
    if s.get("file"):
        try:
            d = json.loads((out / s["file"]).read_text())
            s["headline"] = headline(s["name"], d)
            if s["name"] == "train":
                s["ok"] = s["ok"] and all(x.get("ok") for x in d["stages"])
            if s["name"] == "bench_triton" and "kernels triton" in d["conditions"]:
                # FLOWACT_KERNELS=triton falls back to the reference, silently, when the kernels fail to import
                env = json.loads((out / "env.json").read_text()) if (out / "env.json").exists() else {}
                if env.get("triton_kernels") != "import ok":
                    s["ok"], s["json_error"] = False, f"Triton kernels did not import: {env.get('triton_kernels')}"
        except Exception as exc:  # noqa: BLE001 - a missing or partial JSON is a failed step
            s["ok"], s["json_error"] = False, f"{type(exc).__name__}: {exc}"
    if not s["ok"]:
        log = Path(work) / f"{s['name']}.log"
        s["log_tail"] = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    steps.append(s)
keys = ("DEVICE", "PRESET", "KERNEL_SHAPES", "BENCH_KERNELS", "BENCH_SECONDS", "FLAT_SECONDS", "FLAT_WINDOW",
        "FLAT_BUDGET", "TRAIN_PRESET", "TRAIN_STEPS", "TRAIN_BATCH", "TRAIN_STAGES", "CACHE_CLIPS", "ONLY")
summary = {"all_ok": bool(steps) and all(s["ok"] for s in steps), "wall_seconds": wall,
           "timeouts_sum_s": sum(s["timeout_s"] for s in steps), "steps": steps,
           "settings": {k: os.environ.get(k, "") for k in keys}}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
EOF
}

# run_step NAME TIMEOUT JSON_FILE STDOUT CMD...: CMD under `timeout`, its output into log.txt
# (STDOUT "json": its stdout is the step's JSON file instead), one record into steps.jsonl.
run_step() {
  local name=$1 t=$2 file=$3 stdout=$4 rc t0 t1 ms
  shift 4
  want "$name" || return 0
  echo "== $name (timeout ${t}s) $(date -u +%H:%M:%S)" | tee -a "$LOG"
  t0=$(date +%s%N)
  if [ "$stdout" = json ]; then
    timeout -k 5 "$t" "$@" > "$OUT/$file" 2> "$WORK/$name.log"
  else
    timeout -k 5 "$t" "$@" > "$WORK/$name.log" 2>&1
  fi
  rc=$?
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
  cat "$WORK/$name.log" >> "$LOG"
  [ $rc -eq 0 ] || { echo "   $name: rc $rc$([ $rc -eq 124 ] && echo ' (timed out)')"; tail -n 5 "$WORK/$name.log"; }
  printf '{"name": "%s", "rc": %d, "seconds": %d.%03d, "timeout_s": %d, "file": "%s"}\n' \
    "$name" "$rc" $((ms / 1000)) $((ms % 1000)) "$t" "$file" >> "$WORK/steps.jsonl"
  summarize
}

run_step setup "$T_SETUP" "" log bash "$0" _setup "$WORK"
# shellcheck disable=SC1091
[ -f "$WORK/setup.env" ] && . "$WORK/setup.env"

run_step env "$T_ENV" env.json log "$PY" - "$OUT/env.json" <<'EOF'
import json, os, platform, shutil, subprocess, sys, time
env = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": sys.version.split()[0],
       "executable": sys.executable, "platform": platform.platform(), "cpu_count": os.cpu_count()}

def attempt(key, fn):
    try:
        env[key] = fn()
    except Exception as exc:  # noqa: BLE001 - record what is missing, never stop here
        env[key] = f"FAILED: {type(exc).__name__}: {exc}"

def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()

import torch
env.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
attempt("triton", lambda: __import__("triton").__version__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    env.update(gpu_name=p.name, capability=f"{p.major}.{p.minor}", sm_count=p.multi_processor_count,
               gpu_memory_gib=round(p.total_memory / 2**30, 1), l2_mib=round(getattr(p, "L2_cache_size", 0) / 2**20, 1))
else:
    env["gpu_name"] = None
if shutil.which("nvidia-smi"):
    attempt("nvidia_smi", lambda: run("nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used,"
                                      "clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu",
                                      "--format=csv"))
attempt("git_commit", lambda: run("git", "rev-parse", "HEAD") or None)
import flowact_kernels
env["kernels_backend_env"] = os.environ.get("FLOWACT_KERNELS", "auto")
attempt("triton_kernels", lambda: (__import__("flowact_kernels.triton_ops"), "import ok")[1])
from flowact.media.ffmpeg import find_ffmpeg
attempt("ffmpeg", lambda: (lambda exe: f"{exe}: {run(exe, '-version').splitlines()[0]}")(find_ffmpeg()))
from flowact.world.speech import check_espeak
attempt("espeak_ng", lambda: (check_espeak(), "ok")[1])
attempt("soundfile", lambda: __import__("soundfile").__version__)
attempt("soxr", lambda: __import__("soxr").__version__)
env["flowact"] = __import__("flowact").__file__
env["env"] = {k: os.environ.get(k) for k in ("PYTHONPATH", "FLOWACT_FFMPEG", "LD_LIBRARY_PATH", "ESPEAK_DATA_PATH",
                                              "TRITON_INTERPRET", "FLOWACT_KERNELS")}
open(sys.argv[1], "w").write(json.dumps(env, indent=1))
print(f"env: {env.get('gpu_name') or 'no GPU'} | torch {env['torch']} | triton {env['triton']} "
      f"| python {env['python']} "
      f"| triton kernels {env['triton_kernels']} | ffmpeg {str(env['ffmpeg']).split(': ')[-1][:22]} "
      f"| espeak-ng {env['espeak_ng']}")
print(env.get("nvidia_smi", "no nvidia-smi"))
EOF
want env && grep -h '^env: \|^name\|^NVIDIA' "$WORK/env.log" 2>/dev/null

kernel_env=()
cuda || kernel_env=(env TRITON_INTERPRET=1)  # the interpreter must be on before the kernels are decorated
run_step kernels "$T_KERNELS" kernels.json log "${kernel_env[@]}" "$PY" benchmarks/bench_kernels.py \
  --shapes "$KERNEL_SHAPES" --json "$OUT/kernels.json"

for k in "$BENCH_KERNELS" reference; do
  name=bench_$([ "$k" = reference ] && echo reference || echo triton)
  kenv=(env FLOWACT_KERNELS="$k")
  [ "$k" = triton ] && ! cuda && kenv+=(TRITON_INTERPRET=1)
  run_step "$name" "$T_BENCH" "$name.json" json "${kenv[@]}" flowact bench --preset "$PRESET" --random-weights \
    --device "$DEVICE" --seconds "$BENCH_SECONDS" "${threads[@]}" --json
done

run_step flat "$T_FLAT" flat.json log env FLOWACT_KERNELS="$BENCH_KERNELS" "$PY" benchmarks/bench_flat.py \
  --preset "$PRESET" --random-weights --device "$DEVICE" --seconds "$FLAT_SECONDS" --window "$FLAT_WINDOW" \
  --budget "$FLAT_BUDGET" "${threads[@]}" --json "$OUT/flat.json"

# toon-128 training throughput: every stage in one process (one start-up, not eight), chained
# as scripts/train_toon128.sh chains them, at the recipe's batch sizes; the transformer stages
# read a small latent cache as the recipe's do. train.json is rewritten after every stage.
run_step train "$T_TRAIN" train.json log "$PY" - "$OUT/train.json" "$WORK/train" <<'EOF'
import json, os, statistics, sys, time, traceback
from pathlib import Path

import torch

from flowact import weights as W
from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.train.cache import build_cache
from flowact.train.loop import TrainRun, train
from flowact.train.stages import StageSettings

out_json, work = Path(sys.argv[1]), Path(sys.argv[2])
E = os.environ
preset, device, steps = load_preset(E["TRAIN_PRESET"]), E["DEVICE"], int(E["TRAIN_STEPS"])
budget, cache = float(E["TRAIN_STAGE_BUDGET"]), work / "cache"
if device == "cpu" and E.get("THREADS"):
    torch.set_num_threads(int(E["THREADS"]))
# stage: (batch, data, init, extra TrainRun fields), as scripts/train_toon128.sh runs them
RECIPE = {
    "vae": (4, "synth", None, {}),
    "pretrain": (8, "cache", "cache/init.safetensors", {}),
    "decoder": (4, "synth", "cache/init.safetensors", {}),
    "selfforce": (4, "cache", "pretrain.safetensors", {}),
    "distill": (4, "cache", "selfforce.safetensors", {"settings": StageSettings(teacher_steps=8)}),
    "lips": (8, "synth", "distill.safetensors", {"speaking": 0.7}),
    "visemes": (32, "synth", "lips.safetensors", {"speaking": 0.7}),
}
WARM = 2  # first steps left out of the medians (allocator, cuDNN and kernel selection)


class OverBudget(Exception):
    pass


def cuda_peak_reset():
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def cuda_peak_mb():
    return round(torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else None


def run_cache():
    t0 = time.perf_counter()
    vae = work / "vae.safetensors"
    with torch.device(device):
        model = FlowActModel(preset)
    W.load_into(model, W.resolve(preset, weights=vae) if vae.exists() else W.resolve(preset, random_weights=True))
    model.eval()
    clips, seconds = int(E["CACHE_CLIPS"]), float(E["CACHE_SECONDS"])
    build_cache(model, cache, clips, seconds, seed=0)
    wall = time.perf_counter() - t0
    return {"clips": clips, "clip_seconds": seconds, "init": str(vae) if vae.exists() else "random",
            "wall_s": round(wall, 2), "clips_per_s": round(clips / wall, 3)}


def run_stage(stage):
    batch, data, init, extra = RECIPE[stage]
    batch = int(E["TRAIN_BATCH"]) if E.get("TRAIN_BATCH") else batch
    data = str(cache) if data == "cache" and (cache / "cache.json").exists() else "synth"
    # the stage before it failed or stopped early: the latest weights of the chain, else random
    chain = [init] if init else []
    if stage != "vae":
        chain += ["selfforce.safetensors", "pretrain.safetensors", "cache/init.safetensors", "vae.safetensors"]
    init = next((work / c for c in chain if (work / c).exists()), None)
    run = TrainRun(stage=stage, preset=preset, data=data, out=work, steps=steps, batch=batch, warmup=1, seed=0,
                   device=device, init=init, save_every=10**6, **extra)
    t0 = time.perf_counter()

    def on_step(step, rec):
        if time.perf_counter() - t0 > budget and step < steps:
            raise OverBudget(f"stopped after {step} steps: over the {budget:g} s stage budget")

    note = None
    try:
        train(run, on_step)
    except OverBudget as exc:
        note = str(exc)
    wall = time.perf_counter() - t0
    recs = [json.loads(l) for l in (work / stage / "log.jsonl").read_text().splitlines()]
    timed = recs[WARM:] if len(recs) > WARM else recs[-1:]
    step_s = statistics.median(r["step_s"] for r in timed)
    data_s = statistics.median(r["data_s"] for r in timed)
    compute_s = statistics.median(r["step_s"] - r["data_s"] for r in timed)
    return {"batch": batch, "data": "cache" if data != "synth" else "synth",
            "init": str(init.relative_to(work)) if init else "random",
            "steps_done": len(recs), "steps_timed": len(timed), "step_s": round(step_s, 4), "data_s": round(data_s, 4),
            "compute_s": round(compute_s, 4), "steps_per_s": round(1 / step_s, 3),
            "compute_steps_per_s": round(1 / max(compute_s, 1e-6), 3),
            "samples_per_s": round(batch / max(compute_s, 1e-6), 2), "first_step_s": recs[0]["step_s"],
            "wall_s": round(wall, 2), "loss_first": recs[0]["loss"], "loss_last": recs[-1]["loss"], "note": note}


try:  # what TrainRun's default (bf16=None) does: autocast where the device computes bf16 natively
    from flowact.precision import native_bf16
    bf16 = device.startswith("cuda") or bool(native_bf16()[0])
except ImportError:
    bf16 = None
report = {"preset": preset.name, "device": device, "steps": steps, "bf16_autocast": bf16, "warm_steps_excluded": WARM,
          "stage_budget_s": budget, "stages": []}
for stage in E["TRAIN_STAGES"].split():
    cuda_peak_reset()
    try:
        row = {"stage": stage, **(run_cache() if stage == "cache" else run_stage(stage)), "ok": True}
    except Exception as exc:  # noqa: BLE001 - the next stage still runs; the error is the result
        traceback.print_exc()
        row = {"stage": stage, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    row["peak_cuda_mb"] = cuda_peak_mb()
    report["stages"].append(row)
    print(json.dumps(row), flush=True)
    out_json.write_text(json.dumps(report, indent=1))
EOF

summarize
echo "== done in $(($(date +%s) - T0)) s; $OUT:"
"$PY" - "$OUT/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
for st in s["steps"]:
    print(f"{st['name']:16s} {'ok  ' if st['ok'] else 'FAIL'} {st['seconds']:6.1f} s / {st['timeout_s']:3d}")
    for k, v in (st.get("headline") or {}).items():
        print(f"    {k}: {v}")
print("all steps ok" if s["all_ok"] else "SOME STEPS FAILED: see summary.json (log_tail) and log.txt")
sys.exit(0 if s["all_ok"] else 1)
EOF
rc=$?
ls "$OUT"
exit $rc
