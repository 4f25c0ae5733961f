#!/usr/bin/env bash
# Kill a long run with SIGKILL after a checkpoint, continue it with --resume, and compare it with the
# same run never interrupted: dev, test, history, gates and the saved weights must be identical.
#
#   scripts/kill_and_resume.sh [OUT_DIR] [KILL_AFTER_STEP] [-- train overrides]
#   scripts/kill_and_resume.sh outputs/kill-resume 200 -- task=rte budget=full method=unipelt_apl \
#       train.epochs=2 runtime.checkpoint_every=100
set -euo pipefail
OUT=${1:-outputs/kill-resume}; AT=${2:-200}; shift $(($# >= 2 ? 2 : $#)); [ "${1:-}" = "--" ] && shift
ARGS=("$@"); [ ${#ARGS[@]} -gt 0 ] || ARGS=(task=rte budget=full method=unipelt_apl train.epochs=2 runtime.checkpoint_every=100)
BIN=$(dirname "$(command -v python)"); U=${UNIPELT:-$BIN/unipelt}; PY=${PYTHON:-$BIN/python}
rm -rf "$OUT"; mkdir -p "$OUT"

"$U" train "${ARGS[@]}" --outputs "$OUT/once" -q
"$U" train "${ARGS[@]}" --outputs "$OUT/killed" -q & PID=$!
step() { "$PY" -c "import glob,torch; f=glob.glob('$OUT/killed/runs/*/checkpoint.pt'); print(torch.load(f[0], weights_only=True)['step'] if f else 0)" 2>/dev/null || echo 0; }
until [ "$(step)" -ge "$AT" ]; do kill -0 $PID 2>/dev/null || { echo "the run ended before step $AT"; exit 1; }; sleep 3; done
kill -KILL $PID; wait $PID || true
echo "killed with SIGKILL after the checkpoint at step $(step)"
"$U" train "${ARGS[@]}" --outputs "$OUT/killed" --resume -q

"$PY" - "$OUT" <<'PY'
import glob, json, sys
out = sys.argv[1]
a, b = (glob.glob(f"{out}/{name}/runs/*/")[0] for name in ("once", "killed"))
ra, rb = (json.load(open(d + "result.json")) for d in (a, b))
same = {k: ra.get(k) == rb.get(k) for k in ("dev", "test", "best_step", "steps", "history", "gates")}
same["weights"] = open(a + "weights.safetensors", "rb").read() == open(b + "weights.safetensors", "rb").read()
print("uninterrupted", ra["test"], "| killed and resumed", rb["test"])
print(", ".join(f"{k} {'equal' if v else 'DIFFERENT'}" for k, v in same.items()))
sys.exit(0 if all(same.values()) else 1)
PY
