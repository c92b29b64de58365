#!/usr/bin/env bash
# Make the "voice" corpus and model: ~25 minutes of Allison Smith's Asterisk prompts
# (Debian's asterisk-core-sounds-en-g722, CC BY-SA 3.0, the same speaker and source as blizzard/tiny,
# see blizzard/tiny/SOURCE.md), decoded to 16 kHz WAV, then a SampleRNN trained on them and stripped
# into models/voice_srnn_sz256.h5.
#
#   models/make_demo.sh            everything: corpus, then train
#   models/make_demo.sh corpus     download + decode: blizzard/voice/ and blizzard/voice_heldout/
#   models/make_demo.sh train      preprocess + fit + prune + strip: models/voice_srnn_sz256.h5
#   models/make_demo.sh STEP ...   single steps: download, decode, preprocess, fit, prune, strip
#
# Needs: apt-get (download; Debian's repositories), dpkg-deb, ffmpeg (decode; installed with
# apt-get when missing and run as root), the project's Python (train). ffmpeg is used here only.
# The settings below can be overridden from the environment, e.g. DEMO_WORK=/tmp/demo.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --- settings -------------------------------------------------------------------------------------
WORK=${DEMO_WORK:-$ROOT/build/demo}                 # the .deb and its unpacked tree
CORPUS=${DEMO_CORPUS:-$ROOT/blizzard/voice}         # the training corpus (WAV, relative paths kept)
HELDOUT=${DEMO_HELDOUT:-${CORPUS}_heldout}          # prompts kept out of training, for listening
PACKAGE=${DEMO_PACKAGE:-asterisk-core-sounds-en-g722}
SOUNDS=${DEMO_SOUNDS:-usr/share/asterisk/sounds/en_US_f_Allison}  # inside the package
EXCLUDE=${DEMO_EXCLUDE:-silence}                    # top-level folders of SOUNDS left out (pure silence)
HELDOUT_EVERY=${DEMO_HELDOUT_EVERY:-20}             # every 20th prompt in path order: 5 %, all kinds
# the decoder, called as `$DECODE IN.g722 OUT.wav` (words split on spaces); default: ffmpeg
DECODE=${DECODE:-decode_ffmpeg}
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}
# the dense model: dim 256, linear quantisation, 18 epochs of the corpus (the default; its training
# took 62 + 42 minutes on 2 CPU cores, a run and its exact resume). docs/ready.md says why not a
# bigger or a mu-law one.
SLOWDIM=${SLOWDIM:-256}
DIM=${DIM:-256}
TRAIN_FLAGS=${TRAIN_FLAGS:---cutlen 512 --batchsize 16 --nepochs 18}
# then, with SPARSITY above 0, block-sparse (for more margin over real time): the dense model's best
# epoch (its weights in float16, as the dense model ships) fine-tuned on the corpus while SPARSITY of
# its large matrices are pruned in 32x1 blocks, rising over its first 3,000 optimizer steps (about 1.3
# epochs): two epochs at the usual learning rate (PRUNE_FLAGS), then more at a lower one from the
# second's checkpoint (PRUNE_TUNE_FLAGS, the epoch count the total), in a folder of its own
# (PRUNE_WORK: its checkpoints do not replace the dense run's). The shipped model is dense (SPARSITY=0,
# the default): at 0.8 this recipe sampled 1.7x as fast but lost the pauses (docs/ready.md, "A sparse
# ready model")
SPARSITY=${SPARSITY:-0}
PRUNE_FLAGS=${PRUNE_FLAGS:---prune-start 0 --prune-end 3000 --cutlen 512 --batchsize 16 --nepochs 2}
PRUNE_TUNE_FLAGS=${PRUNE_TUNE_FLAGS:---learning-rate 0.0005 --nepochs 6}
PRUNE_WORK=${PRUNE_WORK:-$WORK/prune}
MODEL_OUT=${MODEL_OUT:-$ROOT/models/voice_srnn_sz${DIM}.h5}
STRIP_DTYPE=${STRIP_DTYPE:-float16}  # the shipped file's weights (half the bytes; sampled in float32)

die() { echo "make_demo.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"; }
say() { echo "[make_demo] $*"; }

# --- (a) download and unpack ----------------------------------------------------------------------
download() {
    need apt-get "this step needs a Debian/Ubuntu system with apt-get (and its package lists: apt-get update)"
    need dpkg-deb "this step needs dpkg-deb (package dpkg)"
    mkdir -p "$WORK"
    rm -f "$WORK"/"$PACKAGE"_*.deb
    say "downloading $PACKAGE into $WORK"
    (cd "$WORK" && apt-get download "$PACKAGE") \
        || die "apt-get download $PACKAGE failed (run apt-get update? network to Debian's mirrors?)"
    local deb
    deb=$(ls "$WORK"/"$PACKAGE"_*.deb)
    rm -rf "$WORK/pkg"
    dpkg-deb -x "$deb" "$WORK/pkg"
    [ -d "$WORK/pkg/$SOUNDS" ] || die "$deb holds no $SOUNDS"
    say "unpacked $(basename "$deb") into $WORK/pkg"
}

# --- (b) decode to 16 kHz mono 16-bit WAV, holding out every HELDOUT_EVERY-th prompt ---------------
decode_ffmpeg() {
    ffmpeg -nostdin -hide_banner -loglevel error -y -f g722 -i "$1" -ar 16000 -ac 1 -sample_fmt s16 -f wav "$2"
}

ensure_ffmpeg() {
    command -v ffmpeg >/dev/null 2>&1 && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing ffmpeg with apt-get"
        apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null || die "apt-get install ffmpeg failed"
    fi
    command -v ffmpeg >/dev/null 2>&1 || die "ffmpeg is missing: install it (apt-get install ffmpeg) or set DECODE"
}

list_prompts() {  # relative paths of the .g722 files under SOUNDS, sorted bytewise, EXCLUDE left out
    local src=$1 ex
    local -a prune=()
    for ex in $EXCLUDE; do prune+=(-path "./$ex" -prune -o); done
    (cd "$src" && find . "${prune[@]}" -type f -name '*.g722' -print) | sed 's|^\./||' | LC_ALL=C sort
}

decode() {
    local src="$WORK/pkg/$SOUNDS"
    [ -d "$src" ] || die "no unpacked prompts in $src: run '$0 download' first"
    [ "$DECODE" = decode_ffmpeg ] && ensure_ffmpeg
    local -a dec
    read -r -a dec <<< "$DECODE"
    local -a files
    mapfile -t files < <(list_prompts "$src")
    [ ${#files[@]} -gt 0 ] || die "no .g722 files in $src"
    mkdir -p "$CORPUS" "$HELDOUT"
    local i=0 kept=0 held=0 rel safe dest other tmp="$WORK/decoding.wav"
    for rel in "${files[@]}"; do
        i=$((i + 1))
        safe=$(printf '%s' "${rel%.g722}" | tr -c 'A-Za-z0-9._/-' '_')  # safe names, folders kept
        if [ $((i % HELDOUT_EVERY)) -eq 0 ]; then dest=$HELDOUT other=$CORPUS; held=$((held + 1))
        else dest=$CORPUS other=$HELDOUT; kept=$((kept + 1)); fi
        rm -f "$other/$safe.wav"  # a rerun with another split leaves no prompt on both sides
        mkdir -p "$(dirname "$dest/$safe.wav")"
        rm -f "$tmp"
        "${dec[@]}" "$src/$rel" "$tmp" || die "decoding $rel failed"
        [ -s "$tmp" ] || die "decoding $rel wrote nothing"
        mv -f "$tmp" "$dest/$safe.wav"  # whole files only: an interrupted run leaves no half WAV
    done
    say "decoded ${#files[@]} prompt(s): $kept into $CORPUS, $held held out into $HELDOUT"
}

corpus() { download; decode; }

# --- (c) preprocess and train, (d) strip ----------------------------------------------------------
# train_srnn.py reads ./blizzard/EXP_parts: run from the folder above blizzard/, EXP the corpus name
exp_dir() {
    [ "$(basename "$(dirname "$CORPUS")")" = blizzard ] || die "the corpus must be a folder blizzard/NAME (is $CORPUS)"
    dirname "$(dirname "$CORPUS")"
}

preprocess() {
    [ -d "$CORPUS" ] || die "no corpus in $CORPUS: run '$0 corpus' first"
    local top; top=$(exp_dir)
    (cd "$top" && "$PYTHON" "$ROOT/preprocess.py" "blizzard/$(basename "$CORPUS")" --force)
}

fit() {
    local top; top=$(exp_dir)
    # shellcheck disable=SC2086  # TRAIN_FLAGS is a list of words
    (cd "$top" && "$PYTHON" "$ROOT/train_srnn.py" --exp="$(basename "$CORPUS")" \
        --slowdim "$SLOWDIM" --dim "$DIM" $TRAIN_FLAGS)
}

dense_best() { echo "$(exp_dir)/$(basename "$CORPUS")_srnn_sz${DIM}_best.h5"; }

prune() {
    [ "$SPARSITY" = 0 ] && { say "SPARSITY=0: no pruning"; return; }
    local dense start; dense=$(dense_best)
    [ -f "$dense" ] || die "no $dense: run '$0 fit' first"
    # its weights only (a fresh history: the pruned epochs' best is judged among themselves), and the
    # corpus's parts through a link, so that the checkpoints land in PRUNE_WORK
    mkdir -p "$PRUNE_WORK"
    ln -sfn "$(exp_dir)/blizzard" "$PRUNE_WORK/blizzard"
    start="$PRUNE_WORK/dense_weights.h5"
    (cd "$ROOT" && "$PYTHON" -c "import sys; from srnn import checkpoint; checkpoint.strip(*sys.argv[1:3], 'float16')" \
        "$dense" "$start")
    local exp; exp=$(basename "$CORPUS")
    # shellcheck disable=SC2086  # PRUNE_FLAGS and PRUNE_TUNE_FLAGS are lists of words
    (cd "$PRUNE_WORK" && "$PYTHON" "$ROOT/train_srnn.py" --exp="$exp" --load "$start" \
        --sparsity "$SPARSITY" $PRUNE_FLAGS \
        && "$PYTHON" "$ROOT/train_srnn.py" --exp="$exp" --load "${exp}_srnn_sz${DIM}_e1.h5" \
        --sparsity "$SPARSITY" $PRUNE_FLAGS $PRUNE_TUNE_FLAGS)
}

strip() {
    local best; best=$(dense_best)
    [ "$SPARSITY" = 0 ] || best="$PRUNE_WORK/$(basename "$CORPUS")_srnn_sz${DIM}_best.h5"
    [ -f "$best" ] || die "no $best: run '$0 fit' (and '$0 prune') first"
    (cd "$ROOT" && "$PYTHON" -c "import sys; from srnn import checkpoint; checkpoint.strip(*sys.argv[1:3], sys.argv[3])" \
        "$best" "$MODEL_OUT" "$STRIP_DTYPE")
    say "wrote $MODEL_OUT from $best"
}

train() { preprocess; fit; prune; strip; }

main() {
    [ $# -gt 0 ] || set -- corpus train
    local step
    for step in "$@"; do
        case $step in
            corpus|train|download|decode|preprocess|fit|prune|strip) ;;
            *) die "unknown step '$step' (corpus, train, download, decode, preprocess, fit, prune, strip)" ;;
        esac
    done
    for step in "$@"; do "$step"; done
}

main "$@"
