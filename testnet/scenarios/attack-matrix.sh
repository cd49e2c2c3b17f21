#!/bin/sh
# The attack matrix of issues #16 and #21 (docs/SECURITY.md): one baseline run, then every
# attack alone and all of them together in one testnet, each compared with the baseline. Prints
# one line per run (with the economic attackers' net against an honest worker's); the reports
# stay in $OUT. Takes about fifteen minutes on two cores. ATTACKS picks a subset.
#
#   IFX=target/debug/ifx OUT=/tmp/attack-matrix sh testnet/scenarios/attack-matrix.sh
set -u
IFX=${IFX:-ifx}
OUT=${OUT:-/tmp/ifx-attack-matrix}
ARGS="--quiet --nodes 8 --verifiers 2 --duration 40 --render-size 128 --render-spp 16 --fl-rounds 0"
rm -rf "$OUT" && mkdir -p "$OUT"
$IFX testnet $ARGS --base-dir "$OUT/baseline" > "$OUT/baseline.txt" 2>&1
echo "baseline: $(tail -n 2 "$OUT/baseline.txt" | head -n 1)"
status=0
ATTACKS=${ATTACKS:-hb-overflow challenge-flood work-flood fork-bomb author-flood sync-stall eclipse api-rebind \
forged-receipt seal-spam heartbeat-burst timeout-dodge self-deal verifier-copy fake-job-tile all}
for a in $ATTACKS; do
    $IFX testnet $ARGS --attack "$a" --baseline-report "$OUT/baseline/report.json" --base-dir "$OUT/$a" > "$OUT/$a.txt" 2>&1 || status=1
    echo "$a: $(grep -E '^  attacks vs baseline|^  settlement|^  economics' "$OUT/$a.txt" | tr -s ' ' | tr '\n' ' ')$(grep -E '^(OK|FAILED)' "$OUT/$a.txt")"
done
exit $status
