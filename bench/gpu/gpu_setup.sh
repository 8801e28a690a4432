# shellcheck shell=bash
# Make the lent GPU machine (Python 3.12, torch preinstalled, no network) able
# to run sweep: install the carried wheels into /tmp/site, unpack the carried
# Fashion-MNIST into data/FashionMNIST/raw/, export PYTHONPATH, check imports.
#
# Why: that machine has no package index, and its image lacks ray, sqlalchemy,
# tensorboardX, pydantic and jsonschema. The wheels and the data travel in the
# git-ignored folder .whl/ (listed in .git/info/exclude, never committed),
# named in the device call's `carry`. A second folder .whl2/ is read too, for
# a layout split over two calls on one warm machine.
#
# Use, from the repository root, at the start of a device command:
#     source bench/gpu/gpu_setup.sh || exit
# Sourced, its PYTHONPATH stays set for the commands after it. Safe to run
# again: an install already made from the same wheels is kept, and data
# already in place (right size and checksum) is not unpacked again.
#
# What travels (cp312 manylinux / pure-Python wheels, one version of each):
#   ray 2.60.0 (repacked: see below), sqlalchemy, tensorboardX, pydantic,
#   pydantic-core, annotated-types, typing-inspection, typing-extensions
#   (pydantic needs >=4.16, newer than the image may hold), jsonschema,
#   jsonschema-specifications, referencing, rpds-py.
# ray's wheel is 79 MB, over one call's 64 MiB; what travels is the same wheel
# without ray/jars (the Java worker, 31 MB), ray/rllib, ray/llm and the
# dashboard's *.js.map files, none of which Ray Tune loads, with its RECORD
# edited to match and its members LZMA-compressed (pip reads that zip method).
# Where .whl/ holds ray.whl.part-* pieces instead, they are joined first.
#
# Already on the GPU machine's image (KINDS.md, "Python packages already
# there"), so not carried: torch, torchvision, numpy, pandas, pyarrow, fsspec,
# matplotlib, tensorboard, pyyaml, requests (urllib3, idna, certifi,
# charset-normalizer), click, filelock, msgpack, packaging, protobuf, attrs,
# pytest, iniconfig, pluggy, hypothesis, sortedcontainers. Their versions
# there were not read; ray 2.60 asks for packaging>=24.2, msgpack<2,
# protobuf>=3.20.3, pyarrow>=17 (ray's generated *_pb2 carry no runtime
# version check). A failing import below names what is missing.

_gpu_setup() {
  local root site wheels d f n stamp want got rc=0
  root=$PWD
  site=${GPU_SETUP_SITE:-/tmp/site}
  if [ ! -f "$root/sweep/cli.py" ]; then
    echo "gpu_setup: run me from the repository root (no sweep/cli.py in $root)" >&2
    return 1
  fi
  python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
    || echo "gpu_setup: warning: python3 is $(python3 -V 2>&1), the wheels are for 3.12" >&2

  # 1. ray's wheel, joined from its pieces where it travels split.
  local join=/tmp/gpu_setup_join parts seen=" "
  for f in "$root"/.whl/*.whl.sha256 "$root"/.whl2/*.whl.sha256; do
    [ -e "$f" ] || continue
    n=$(basename "${f%.sha256}")
    case $seen in *" $n "*) continue ;; esac
    seen="$seen$n "
    # Its pieces, from both folders, in suffix order (.part-aa, .part-ab, ...).
    parts=$(for d in .whl .whl2; do ls "$root/$d/$n".part-* 2>/dev/null; done \
            | awk -F/ '{print $NF "\t" $0}' | sort | cut -f2)
    if [ -z "$parts" ]; then continue; fi
    if [ -f "$join/$n" ] && (cd "$join" && sha256sum -c --quiet "$f" >/dev/null 2>&1); then
      continue
    fi
    mkdir -p "$join"
    # shellcheck disable=SC2086  # the paths hold no blanks
    cat $parts >"$join/$n.tmp" && mv "$join/$n.tmp" "$join/$n"
    if ! (cd "$join" && sha256sum -c --quiet "$f" >/dev/null 2>&1); then
      echo "gpu_setup: $n: its pieces ($(echo $parts | wc -w)) do not join to the right file: carry both .whl and .whl2" >&2
      rm -f "$join/$n"; rc=1
    fi
  done

  # 2. Every wheel into $site, skipped when the same set is already there.
  wheels=()
  for f in "$root"/.whl/*.whl "$root"/.whl2/*.whl "$join"/*.whl; do
    [ -e "$f" ] && wheels+=("$f")
  done
  if [ ${#wheels[@]} -eq 0 ]; then
    echo "gpu_setup: no wheels in .whl/ or .whl2/: name .whl in the call's carry" >&2
    return 1
  fi
  want=$(for f in "${wheels[@]}"; do printf '%s %s\n' "$(basename "$f")" "$(stat -c %s "$f")"; done | sort)
  stamp=$site/.gpu_setup_wheels
  got=$(cat "$stamp" 2>/dev/null)
  if [ "$want" = "$got" ]; then
    echo "gpu_setup: wheels already installed in $site (${#wheels[@]})"
  else
    rm -f "$stamp"
    if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "${wheels[@]}"; then
      printf '%s\n' "$want" >"$stamp"
      echo "gpu_setup: installed ${#wheels[@]} wheels in $site"
    else
      echo "gpu_setup: pip install into $site failed" >&2
      rc=1
    fi
  fi

  # 3. Fashion-MNIST where sweep.data.datasets.load_dataset reads it: prepare_fashion_mnist
  # returns at once when all four files are in data/FashionMNIST/raw/, so it
  # never looks for Debian's package; torchvision (download=False) reads them.
  local raw=$root/data/FashionMNIST/raw src sum
  mkdir -p "$raw"
  while read -r sum n; do
    if [ -f "$raw/$n" ] && [ "$(sha256sum <"$raw/$n" | cut -d' ' -f1)" = "$sum" ]; then
      continue
    fi
    src=
    for f in "$root"/.whl/fashion-mnist/"$n".xz "$root"/.whl2/fashion-mnist/"$n".xz \
             "$root"/.whl/fashion-mnist/"$n".gz "$root"/.whl2/fashion-mnist/"$n".gz; do
      [ -f "$f" ] && { src=$f; break; }
    done
    if [ -z "$src" ]; then
      echo "gpu_setup: Fashion-MNIST $n: neither in $raw nor carried in .whl/fashion-mnist/" >&2
      rc=1; continue
    fi
    # Python's lzma/gzip, not xz(1), which the image may lack; .part then
    # rename, so a killed unpack never looks complete.
    python3 - "$src" "$raw/$n.part" <<'PY' && mv "$raw/$n.part" "$raw/$n"
import gzip, lzma, shutil, sys
src, dst = sys.argv[1:]
opener = lzma.open if src.endswith(".xz") else gzip.open
with opener(src, "rb") as i, open(dst, "wb") as o:
    shutil.copyfileobj(i, o, 1 << 20)
PY
    if [ "$(sha256sum <"$raw/$n" 2>/dev/null | cut -d' ' -f1)" != "$sum" ]; then
      echo "gpu_setup: Fashion-MNIST $n: unpacked file has the wrong checksum" >&2
      rm -f "$raw/$n"; rc=1
    fi
  done <<'SUMS'
c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888 train-images-idx3-ubyte
bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9 train-labels-idx1-ubyte
5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b t10k-images-idx3-ubyte
0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34 t10k-labels-idx1-ubyte
SUMS
  if [ $rc -eq 0 ]; then echo "gpu_setup: Fashion-MNIST in $raw"; fi

  # 4. PYTHONPATH (each entry once, however often this runs) and PATH for
  # ray's scripts; Ray's workers inherit both.
  case ":${PYTHONPATH-}:" in *":$root:"*) ;; *) PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} ;; esac
  case ":$PYTHONPATH:" in *":$site:"*) ;; *) PYTHONPATH=$site:$PYTHONPATH ;; esac
  export PYTHONPATH
  case ":$PATH:" in *":$site/bin:"*) ;; *) export PATH=$site/bin:$PATH ;; esac

  # 5. One line per import check.
  python3 - <<'PY' || rc=1
import importlib, sys
bad = 0
for name in ("ray", "ray.tune", "sqlalchemy", "pytest", "hypothesis",
             "tensorboardX", "pydantic", "torch", "sweep.cli"):
    try:
        mod = importlib.import_module(name)
        top = sys.modules[name.split(".")[0]]
        print(f"gpu_setup: ok   import {name:<13} {getattr(top, '__version__', '-'):<12} {getattr(mod, '__file__', '')}")
    except Exception as exc:  # print every failure, not only the first
        bad += 1
        print(f"gpu_setup: FAIL import {name}: {type(exc).__name__}: {exc}")
sys.exit(bad != 0)
PY
  echo "gpu_setup: PYTHONPATH=$PYTHONPATH"
  if [ $rc -eq 0 ]; then echo "gpu_setup: ready"; else echo "gpu_setup: NOT ready (see above)" >&2; fi
  return $rc
}

_gpu_setup; _gpu_setup_rc=$?
unset -f _gpu_setup
if [ "${BASH_SOURCE[0]:-$0}" != "$0" ]; then
  return $_gpu_setup_rc
else
  exit $_gpu_setup_rc
fi
