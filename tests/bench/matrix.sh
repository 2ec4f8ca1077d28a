#!/bin/sh
# tests/bench/matrix.sh: `make bench-matrix`. netc's training steps against
# PyTorch's over models x batches, all in one run on this machine:
#  - native: netc built for this CPU (`netc build`) against PyTorch's best
#    of its two memory formats (tests/bench/torch_bench.py, each format in
#    its own process);
#  - on an AVX-512 machine also the AVX2 half: netc `--portable` (the AVX2
#    tiles) against PyTorch with oneDNN capped at AVX2
#    (ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2; checked once with
#    DNNL_VERBOSE=1, whose "isa:" line is printed, and the half is skipped
#    when the cap does not take).
# Each cell is netc's `bench` (median of timed windows after warm-up, on
# one random batch) and torch_bench.py with the same steps, warm-up and
# windows. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for every run
# (OpenBLAS picks its kernel for this CPU; blas_kernel= says which), and
# the runs are one after another, never two at once.
#
# Prints a line per measurement ("netc ..." from bench, "torch ..." from
# torch_bench.py), then a line per cell
#   cell model=... batch=... isa=native|avx2 netc_img_per_s=...
#        torch_img_per_s=... torch_format=... speedup=...
#        netc_rss_mib=... torch_rss_mib=...
# and last the Markdown table (also written to OUTDIR/matrix.md) that
# docs/benchmarks.md quotes.
# Usage: matrix.sh NETC OUTDIR; env MODELS (resnet18 resnet34 resnet50
# resnet101), BATCHES (16 32 64 128), THREADS (2), STEPS (3), WINDOWS (3),
# WARMUP (2), ISAS (native, plus avx2 on AVX-512).
set -e
netc=$1 out=$2
models=${MODELS:-resnet18 resnet34 resnet50 resnet101}
batches=${BATCHES:-16 32 64 128}
threads=${THREADS:-2} steps=${STEPS:-3} windows=${WINDOWS:-3}
warmup=${WARMUP:-2}
mkdir -p "$out"
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
py=/usr/bin/python3
torch=yes
$py -c "import torch" 2>/dev/null || torch=no
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
flags=$(sed -n 's/^flags[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
isa_list="AVX2+FMA"
case " $flags " in *" avx512f "*) isa_list="AVX-512 (avx512f$(
  for f in avx512bw avx512vl avx512_vnni avx512_bf16; do
    case " $flags " in *" $f "*) printf '/%s' "${f#avx512}" ;; esac
  done))" ;; esac
echo "matrix cpu=\"$cpu\" isa=\"$isa_list\" cores=$(nproc) threads=$threads" \
     "steps=$steps windows=$windows warmup=$warmup"

isas=${ISAS:-native}
avx2_env=""
if [ -z "${ISAS:-}" ]; then
  case " $flags " in *" avx512f "*) isas="native avx2" ;; esac
fi
case " $isas " in *" avx2 "*)
  if [ $torch = yes ]; then
    # oneDNN says which ISA it dispatches to; the cap must take.
    said=$(env ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 DNNL_VERBOSE=1 \
           $py -c "import torch
c = torch.nn.Conv2d(16, 16, 3, padding=1)
c(torch.randn(2, 16, 8, 8)).sum().backward()" 2>&1 |
           grep -m 1 'isa:' || true)
    echo "matrix onednn_avx2_cap: $said"
    case $said in
      *"isa:Intel AVX2"*) avx2_env="ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2" ;;
      *) echo "matrix: oneDNN did not take the AVX2 cap; no AVX2 half"
         isas=native ;;
    esac
  fi ;;
esac

cells=$out/cells.txt
: > "$cells"
for isa in $isas; do
  for m in $models; do
    for b in $batches; do
      opt="" tenv=""
      if [ $isa = avx2 ]; then opt=--portable tenv=$avx2_env; fi
      dir=$out/$isa/$m-b$b
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $netc build $opt \
        --threads "$threads" -b "$b" -o "$dir" "models/$m.net" >/dev/null
      line=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$dir/$m" bench \
             --threads "$threads" --steps "$steps" --windows "$windows" \
             --warmup "$warmup" | head -n 1)
      echo "$line isa=$isa"
      ni=$(field "$line" img_per_s) nr=$(field "$line" rss_mib)
      ti=na tf=na tr=na
      if [ $torch = yes ]; then
        t=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $tenv $py \
            tests/bench/torch_bench.py "$m" --batch "$b" --threads "$threads" \
            --steps "$steps" --windows "$windows" --warmup "$warmup" \
            2>/dev/null | grep '^torch ' | tail -n 1) || t=""
        if [ -n "$t" ]; then
          echo "$t isa=$isa"
          ti=$(field "$t" img_per_s) tf=$(field "$t" format)
          tr=$(field "$t" rss_mib)
        fi
      fi
      sp=na
      [ "$ti" != na ] && sp=$(awk -v a="$ni" -v b="$ti" 'BEGIN { printf "%.2f", a / b }')
      c="cell model=$m batch=$b isa=$isa netc_img_per_s=$ni torch_img_per_s=$ti"
      c="$c torch_format=$tf speedup=$sp netc_rss_mib=$nr torch_rss_mib=$tr"
      echo "$c"
      echo "$c" >> "$cells"
    done
  done
done

# The table: a row per model and batch, a column group per ISA.
awk -v cpu="$cpu" -v isas="$isas" -v threads="$threads" '
function fmt(t) {
  if (t == "channels_last") return "CL"
  if (t == "contiguous") return "NCHW"
  return "na"
}
{ for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  k = f["model"] " " f["batch"]
  if (!(k in seen)) { seen[k] = 1; order[++n] = k }
  c = f["netc_img_per_s"] " | " f["torch_img_per_s"] " (" fmt(f["torch_format"]) ")"
  cell[k " " f["isa"]] = c " | **" f["speedup"] "x**"
  if (f["isa"] == "native") rss[k] = f["netc_rss_mib"] " / " f["torch_rss_mib"]
}
END {
  ni = split(isas, I, " ")
  printf "Training img/s on %s, %s threads: netc, PyTorch in its best format, ", cpu, threads
  printf "speedup; peak RSS in MiB, netc / PyTorch (native).\n\n"
  h = "| model | batch "; s = "|---|---"
  for (j = 1; j <= ni; j++) {
    t = "native"
    if (I[j] == "avx2") t = "AVX2"
    h = h "| netc " t " | PyTorch " t " | speedup "; s = s "|---|---|---"
  }
  print h "| RSS |"; print s "|---|"
  for (r = 1; r <= n; r++) {
    split(order[r], mb, " "); line = "| " mb[1] " | " mb[2] " "
    for (j = 1; j <= ni; j++) {
      key = order[r] " " I[j]
      if (key in cell) line = line "| " cell[key] " "
      else line = line "| na | na | na "
    }
    print line "| " rss[order[r]] " |"
  }
}' "$cells" | tee "$out/matrix.md"
