#!/usr/bin/env bash
# The newcomer scenario of the README ("Teach evapp your gestures"): a simulated person outside every training
# range (evapp/simulate/person.py NEWCOMER, a 320x240 sensor, 100 Hz lamp flicker, a new motion) performs live
# over tcp:// for the real `evapp collect --headless`; the takes fine-tune both shipped models; other recordings
# of the same person (other seeds, never used in collect) measure before and after.
# Usage: docs/newcomer-scenario.sh OUT_DIR [ARCH ...]   (ARCH default: saformer-2-256 sglformer-3-256)
set -euo pipefail
out=${1:?usage: docs/newcomer-scenario.sh OUT_DIR [ARCH ...]}
shift
archs=("${@:-saformer-2-256}")
[ $# -eq 0 ] && archs=(saformer-2-256 sglformer-3-256)
classes=hand_clapping,right_hand_wave,left_hand_wave,right_arm_clockwise,right_arm_counter_clockwise
classes=$classes,left_arm_clockwise,left_arm_counter_clockwise,arm_roll,air_drums,air_guitar,other_gestures
classes=$classes,both_arms_raise
person=(--person newcomer --resolution 320x240 --subject-seed 3)
port=${PORT:-47777}
mkdir -p "$out/eval" "$out/models"
export EVAPP_OUTPUT=$out/output

# 1. Capture: the performer follows collect's prompts (collect's stdout is the performer's stdin).
if ! grep -q '"complete": true' "$out/collect.jsonl" 2>/dev/null; then
  rm -f "$out/prompts"; mkfifo "$out/prompts"
  python -m evapp.simulate.performer --port "$port" "${person[@]}" --seed 100 < "$out/prompts" \
    > "$out/performer.out" 2> "$out/performer.err" &
  sleep 3
  /usr/bin/time -f "collect: %e s" evapp collect --camera "tcp://127.0.0.1:$port" --classes "$classes" --takes 5 \
    --out "$out/takes" --headless 2> "$out/collect.err" | tee "$out/collect.jsonl" > "$out/prompts"
  wait
fi

# 2. Held-out recordings of the same person: other seeds, all 12 motions.
for seed in 201 202; do
  [ -f "$out/eval/newcomer-$seed.aedat4" ] || evapp simulate "$out/eval/newcomer-$seed.aedat4" "${person[@]}" \
    --seed "$seed" --classes "$classes" --gesture-s 3 --pause-s 2 --fps 500 > /dev/null
done

# 3. The simulator's own people (the seed and ranges of the shipped models' training set, architectures.md and the
# model cards): its train split (users 1-19) to rehearse while fine-tuning, its held-out test split (users 20-24)
# to measure forgetting.
synth=(--dataset --lightings fluorescent,led,natural --gesture-s 3 --pause-s 1 --seed 11 --vary-sensor)
[ -f "$out/synth128-test/trials_to_test.txt" ] || evapp simulate "$out/synth128-test" "${synth[@]}" --users 24 \
  --train-users 19 --split test > /dev/null
[ -f "$out/synth128-train/trials_to_train.txt" ] || evapp simulate "$out/synth128-train" "${synth[@]}" \
  --users 20 --train-users 19 --split train > /dev/null

# 4. Before and after, for each architecture.
for arch in "${archs[@]}"; do
  # One answer per frame for both (sglformer's own staggered:8 costs 8 steps per answer: hours on a CPU here).
  policy=(--policy persistent)
  for seed in 201 202; do  # the base's answers do not depend on the takes: kept from an earlier run
    [ -s "$out/$arch-before-$seed.json" ] || evapp eval-stream "$out/eval/newcomer-$seed.aedat4" --model "$arch" \
      "${policy[@]}" --json --confusion "$out/$arch-before-$seed.png" > "$out/$arch-before-$seed.json"
  done
  /usr/bin/time -f "finetune $arch: %e s" evapp finetune "$arch" --data "$out/takes" \
    --rehearse "$out/synth128-train" --out "$out/models/$arch-newcomer" --force > "$out/$arch-finetune.json"
  for model in "$arch" "$out/models/$arch-newcomer"; do  # forgetting: the simulator's held-out people
    tag=$(basename "$model")
    [ -s "$out/$tag-synthetic.json" ] || evapp eval "$model" --data "$out/synth128-test" --json \
      > "$out/$tag-synthetic.json"
  done
  for seed in 201 202; do
    evapp eval-stream "$out/eval/newcomer-$seed.aedat4" --model "$out/models/$arch-newcomer" "${policy[@]}" --json \
      --confusion "$out/$arch-after-$seed.png" > "$out/$arch-after-$seed.json"
  done
done
python - "$out" "${archs[@]}" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for arch in sys.argv[2:]:
    for when in ("before", "after"):
        runs = [json.loads((out / f"{arch}-{when}-{s}.json").read_text()) for s in (201, 202)]
        frames = sum(r["frames_in_gestures"] for r in runs)
        right = sum(r["frame_accuracy"] * r["frames_in_gestures"] for r in runs)
        names = runs[0]["class_names"]
        new = names.index("both_arms_raise")
        conf = [sum(r["confusion"][new][c] for r in runs) for c in range(len(runs[0]["confusion"][new]))]
        new_acc = conf[new] / max(sum(conf), 1) if new < len(conf) - 1 else 0.0
        lat = [r["median_latency_ms"] for r in runs if r["median_latency_ms"] is not None]
        print(f"{arch} {when}: frame accuracy {100 * right / frames:.1f} % of {frames} frames, "
              f"both_arms_raise {100 * new_acc:.1f} %, median latency {sorted(lat)} ms, "
              f"missed {sum(r['missed_gestures'] for r in runs)} of {sum(r['gestures'] for r in runs)}, "
              f"false alarms {sum(r['false_alarms'] for r in runs)}")
    for tag in (arch, f"{arch}-newcomer"):
        synthetic = json.loads((out / f"{tag}-synthetic.json").read_text())
        print(f"{tag}: synthetic test split {100 * synthetic['clip_accuracy']:.2f} % of {synthetic['clips']} clips")
EOF
