#!/usr/bin/env bash
# make demo: build a map of the embedded default scene, then relocalize its test bag through the live
# ROS 2 node and print the accuracy. Run through `make demo` (which sets up .venv and sources
# scripts/env.sh). Every artefact goes under $DEMO_OUT (default: ./demo_out).
#
# The embedded default is a synthetic room generated deterministically from DEMO_SEED
# (glace-make-scene); the encoder is the shipped default (XFeat); the map uses the cpu preset
# (DEMO_PRESET=fast: the fast preset).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${DEMO_OUT:-$ROOT/demo_out}"
SEED="${DEMO_SEED:-7}"
N_TRAIN="${DEMO_N_TRAIN:-250}"
N_TEST="${DEMO_N_TEST:-50}"
RESOLUTION="${DEMO_RESOLUTION:-480x640}"
PRESET="${DEMO_PRESET:-cpu}"  # glace-train preset: cpu (the default), fast (about a third of the mapping time)
step() { printf '\n[demo %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
START=$(date +%s)
mkdir -p "$OUT"
echo "[demo] all artefacts go under $OUT"

SCENE="$OUT/scene"
if [ -f "$SCENE/scene.json" ] && [ -f "$OUT/.scene-$SEED-$N_TRAIN-$N_TEST-$RESOLUTION" ]; then
  step "1/4 scene: reusing $SCENE"
else
  step "1/4 scene: rendering the default synthetic room (seed $SEED, $N_TRAIN train + $N_TEST test frames, $RESOLUTION)"
  rm -rf "$SCENE" "$OUT"/.scene-*
  glace-make-scene "$SCENE" --seed "$SEED" --n-train "$N_TRAIN" --n-test "$N_TEST" --resolution "$RESOLUTION"
  touch "$OUT/.scene-$SEED-$N_TRAIN-$N_TEST-$RESOLUTION"
fi

step "2/4 map: glace-train --preset $PRESET (progress bars below)"
T0=$(date +%s)
glace-train "$SCENE" "$OUT/map.pt" --preset "$PRESET"
MAP_S=$(( $(date +%s) - T0 ))

step "3/4 bag: the test split as a rosbag2 (mcap)"
glace-scene-to-bag "$SCENE" "$OUT/test_bag" --split test --overwrite

step "4/4 replay: the bag through the live relocalizer node (lockstep: every frame answered)"
glace-replay-eval "$OUT/test_bag" --map "$OUT/map.pt" --out "$OUT/replay" --lockstep | tee "$OUT/replay_table.txt"

TOTAL=$(( $(date +%s) - START ))
echo
echo "[demo] done in ${TOTAL} s (mapping ${MAP_S} s)"
echo "[demo] map:              $OUT/map.pt (+ map.pt.json, map.pt.keyframes.npz)"
echo "[demo] poses and summary: $OUT/replay/"
echo "[demo] trajectory plot:  $OUT/replay/trajectory.png"
