#!/usr/bin/env bash
# Build .whl/, what a lent GPU machine needs to run sweep (bench/gpu/gpu_setup.sh
# consumes it and says what travels and why), from the package registries and
# the Fashion-MNIST already on this machine:
#   bash .ci/setup && bash bench/gpu/build_gpu_carry.sh
# then one device call with carry [".whl"] running `bash bench/gpu/gpu_check.sh`.
#
#   --force   rebuild even when .whl/ is already what this script would build
#   --split   the two-call layout, for when .whl/ would not fit one call:
#             ray's wheel in two pieces, .whl/ray-*.whl.part-aa (with the
#             other wheels and the data) and .whl2/ray-*.whl.part-ab, each
#             folder with ray-*.whl.sha256; gpu_setup.sh joins them. Carry
#             [".whl"] in a first call (command `true`), [".whl2"] in a second
#             on the still warm machine (.whl/ stays there between calls).
#
# Steps: read the versions installed in .venv (made by .ci/setup: the same
# versions the tests run with here, resolved together by pip); `pip download`
# each one's cp312 manylinux2014 / pure-Python wheel, without dependencies,
# into a temporary folder; repack ray's wheel with bench/gpu/repack_wheel.py
# (without ray/jars, ray/rllib, ray/llm and the dashboard's *.js.map, RECORD
# edited, LZMA); LZMA-recompress the other wheels where that is smaller
# (members and RECORD unchanged); compress the four Fashion-MNIST files with
# xz (from data/FashionMNIST/raw/ or Debian's /usr/share/datasets/fashion-mnist/,
# checked against the sums gpu_setup.sh checks) into .whl/fashion-mnist/;
# check every wheel's CRCs and RECORD; check that .whl/ plus the rest of the
# working tree stays within one device call's 64 MiB; then put the result in
# place of .whl/ (and .whl2/). Safe to run again: when .whl/ already holds
# what this script would build (.whl/build_gpu_carry.txt: the inputs and every
# file's sha256), it says so and stops. The only downloads are pip's.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
die() { echo "build_gpu_carry: $*" >&2; exit 1; }

force=0 split=0
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    --split) split=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $arg (use --force, --split or --help)" ;;
  esac
done

py=$root/.venv/bin/python
[ -x "$py" ] || die "no .venv/bin/python: run bash .ci/setup first"
[ -f bench/gpu/repack_wheel.py ] || die "no bench/gpu/repack_wheel.py beside me"
for tool in sha256sum split; do
  command -v "$tool" >/dev/null || die "$tool not found (coreutils)"
done

limit=$((64 * 1024 * 1024))     # one device call's working tree, carry included
stamp_name=build_gpu_carry.txt
# What gpu_setup.sh carries, as distribution names, ray first.
packages=(ray sqlalchemy tensorboardX pydantic pydantic-core annotated-types typing-inspection
          typing-extensions jsonschema jsonschema-specifications referencing rpds-py)
ray_drops=('ray/jars/*' 'ray/rllib/*' 'ray/llm/*' 'ray/dashboard/*.js.map')
platform_args=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
               --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --no-deps)
# The unpacked files' sha256, as in gpu_setup.sh.
data_sums='c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888 train-images-idx3-ubyte
bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9 train-labels-idx1-ubyte
5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b t10k-images-idx3-ubyte
0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34 t10k-labels-idx1-ubyte'

# 1. The versions, from .venv: name==version per line, or one line naming what is missing.
reqs=$("$py" - "${packages[@]}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
missing, out = [], []
for name in sys.argv[1:]:
    try:
        out.append(f"{name}=={version(name)}")
    except PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"build_gpu_carry: not installed in .venv: {', '.join(missing)}: run bash .ci/setup first")
print("\n".join(out))
PY
) || exit 1
mapfile -t reqs <<<"$reqs"

# 2. Up to date already? Then only its size is checked again (the working tree
# may have grown): in each device call, the working tree (tracked and untracked,
# not ignored, files) and the carried folder travel, together within 64 MiB.
tree=0
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  tree=$(git ls-files -z -co --exclude-standard | "$py" -c '
import os, sys
paths = sys.stdin.buffer.read().split(b"\0")
print(sum(os.lstat(p).st_size for p in paths
          if p and not p.startswith((b".whl/", b".whl2/")) and os.path.lexists(p)))')
fi
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
check_size() {  # $1: folder as built, $2: its name
  local bytes biggest
  bytes=$(find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  echo "build_gpu_carry: $2/ $(mib "$bytes") ($bytes bytes) + working tree $(mib "$tree") = $(mib $((bytes + tree))) of 64 MiB"
  if [ $((bytes + tree)) -gt $limit ]; then
    biggest=$(cd "$1" && find . -type f -printf '%s %P\n' | sort -rn | head -n 3 \
              | awk '{printf "%s%s %.1f MiB", (NR > 1 ? ", " : ""), $2, $1 / 1048576}')
    die "$2/ with the working tree is $(mib $((bytes + tree))), over one call's 64 MiB by $(mib $((bytes + tree - limit))); biggest: $biggest$([ $split = 1 ] || echo '; try --split')"
  fi
}
spec=$(printf '%s\n' "python 3.12 cp312 manylinux2014_x86_64" "${reqs[@]}" "drop ${ray_drops[*]}" \
         "split $split" "$data_sums"; sha256sum bench/gpu/build_gpu_carry.sh bench/gpu/repack_wheel.py)
spec_sum=$(printf '%s' "$spec" | sha256sum | cut -d' ' -f1)
up_to_date() {  # $1: folder; its stamp names this spec and every file in it, unchanged
  local dir=$1 stamp=$1/$stamp_name
  [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "spec $spec_sum" ] || return 1
  [ "$(tail -n +2 "$stamp" | wc -l)" = "$(cd "$dir" && find . -type f ! -name "$stamp_name" | wc -l)" ] || return 1
  (cd "$dir" && tail -n +2 "$stamp_name" | sha256sum -c --quiet --strict >/dev/null 2>&1)
}
if [ $force = 0 ] && up_to_date .whl && { [ $split = 0 ] || up_to_date .whl2; }; then
  echo "build_gpu_carry: .whl/ is up to date (${reqs[0]}); --force rebuilds it"
  check_size .whl .whl
  if [ $split = 1 ]; then check_size .whl2 .whl2; fi
  exit 0
fi

tmp=$(mktemp -d /tmp/build_gpu_carry.XXXXXX)
data_pid=
trap '[ -z "$data_pid" ] || kill "$data_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/dl" "$tmp/whl/fashion-mnist" "$tmp/whl2"

# 3. Fashion-MNIST, xz-compressed, in the background while the wheels are made
# (two cores). From the unpacked copy .ci/setup made, else from Debian's .gz.
"$py" - "$root/data/FashionMNIST/raw" /usr/share/datasets/fashion-mnist "$tmp/whl/fashion-mnist" \
    >"$tmp/data.log" 2>&1 <<PY &
import gzip, hashlib, lzma, os, sys
raw, deb, dest = sys.argv[1:]
sums = """$data_sums"""
for line in sums.splitlines():
    want, name = line.split()
    data = None
    if os.path.isfile(os.path.join(raw, name)):
        with open(os.path.join(raw, name), "rb") as f:
            data = f.read()
    if data is None or hashlib.sha256(data).hexdigest() != want:
        gz = os.path.join(deb, name + ".gz")
        if not os.path.isfile(gz):
            sys.exit(f"build_gpu_carry: Fashion-MNIST {name}: not in {raw} with the right sha256, and no {gz}: run bash .ci/setup first")
        with gzip.open(gz, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != want:
            sys.exit(f"build_gpu_carry: Fashion-MNIST {name}: {gz} unpacks to the wrong sha256")
    packed = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    if hashlib.sha256(lzma.decompress(packed)).hexdigest() != want:
        sys.exit(f"build_gpu_carry: Fashion-MNIST {name}: the .xz does not unpack to the original")
    with open(os.path.join(dest, name + ".xz"), "wb") as f:
        f.write(packed)
    print(f"build_gpu_carry: fashion-mnist/{name}.xz {len(packed) / 2**20:.1f} MiB (unpacked {len(data) / 2**20:.1f} MiB)")
PY
data_pid=$!

# 4. The wheels.
echo "build_gpu_carry: pip download ${reqs[*]}"
if ! "$py" -m pip download -q --disable-pip-version-check "${platform_args[@]}" -d "$tmp/dl" "${reqs[@]}" \
     >"$tmp/pip.log" 2>&1; then
  die "pip download failed: $(grep -E '^ERROR' "$tmp/pip.log" | head -n1 || tail -n1 "$tmp/pip.log")"
fi
shopt -s nullglob
wheels=("$tmp"/dl/*.whl)
[ ${#wheels[@]} = ${#packages[@]} ] \
  || die "pip download gave ${#wheels[@]} wheels for ${#packages[@]} packages: $(cd "$tmp/dl" && echo *)"
ray_src=("$tmp"/dl/ray-*.whl)
[ ${#ray_src[@]} = 1 ] || die "no single ray-*.whl among the downloads: $(cd "$tmp/dl" && echo *)"
ray_name=$(basename "${ray_src[0]}")

echo "build_gpu_carry: repacking $ray_name (about 2 minutes on 2 cores)"
drop_args=()
for d in "${ray_drops[@]}"; do drop_args+=(--drop "$d"); done
"$py" bench/gpu/repack_wheel.py repack "${ray_src[0]}" "$tmp/$ray_name" "${drop_args[@]}"
for w in "${wheels[@]}"; do
  n=$(basename "$w")
  [ "$n" = "$ray_name" ] && continue
  "$py" bench/gpu/repack_wheel.py repack "$w" "$tmp/re-$n" >/dev/null
  if [ "$(stat -c %s "$tmp/re-$n")" -lt "$(stat -c %s "$w")" ]; then
    mv "$tmp/re-$n" "$tmp/whl/$n"
  else
    rm -f "$tmp/re-$n"; cp "$w" "$tmp/whl/$n"
  fi
done
"$py" bench/gpu/repack_wheel.py verify "$tmp/$ray_name" "$tmp"/whl/*.whl \
  || die "a wheel failed its check (see above)"

if [ $split = 1 ]; then
  (cd "$tmp" && sha256sum "$ray_name" >"whl/$ray_name.sha256" && cp "whl/$ray_name.sha256" whl2/ \
     && split -n 2 -a 2 "$ray_name" "whl/$ray_name.part-" && mv "whl/$ray_name.part-ab" whl2/)
  rm "$tmp/$ray_name"
else
  mv "$tmp/$ray_name" "$tmp/whl/"
fi

if ! wait "$data_pid"; then
  data_pid=
  die "$(grep build_gpu_carry: "$tmp/data.log" | tail -n1 || tail -n1 "$tmp/data.log")"
fi
data_pid=
cat "$tmp/data.log"

# 5. Sizes: each folder, with the rest of the working tree, within one call's 64 MiB.
# Each folder's stamp first, so that the sizes are those of what goes in place.
for d in whl whl2; do
  [ $d = whl ] || [ $split = 1 ] || continue
  (cd "$tmp/$d" && { echo "spec $spec_sum"; find . -type f -printf '%P\n' | sort | xargs -d '\n' sha256sum; }) \
    >"$tmp/$d.stamp"
  mv "$tmp/$d.stamp" "$tmp/$d/$stamp_name"
done
(cd "$tmp/whl" && find . -type f -printf '%s %P\n' | sort -k2 | awk '{printf "build_gpu_carry:   %7.2f MiB  %s\n", $1 / 1048576, $2}')
check_size "$tmp/whl" .whl
if [ $split = 1 ]; then check_size "$tmp/whl2" .whl2; fi

# 6. Into place.
for d in whl whl2; do
  [ $d = whl ] || [ $split = 1 ] || continue
  rm -rf "$root/.$d"
  mv "$tmp/$d" "$root/.$d"
done
if [ $split = 0 ] && [ -d .whl2 ]; then
  if [ -f .whl2/$stamp_name ]; then
    rm -rf .whl2; echo "build_gpu_carry: removed .whl2/ (an earlier --split build)"
  else
    echo "build_gpu_carry: warning: .whl2/ is there, not made by me: gpu_setup.sh reads it too where it is carried" >&2
  fi
fi
for d in .whl .whl2; do
  [ -d "$d" ] || continue
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && ! git check-ignore -q "$d/$stamp_name"; then
    echo "build_gpu_carry: warning: git does not ignore $d/: add '/$d/' to .gitignore (or .git/info/exclude), or it could be committed" >&2
  fi
done
if [ $split = 1 ]; then
  echo "build_gpu_carry: done: carry [\".whl\"] in one device call (command: true), then [\".whl2\"] with bash bench/gpu/gpu_check.sh"
else
  echo "build_gpu_carry: done: carry [\".whl\"] in the device call running bash bench/gpu/gpu_check.sh"
fi
