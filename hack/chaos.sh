#!/usr/bin/env bash
# make chaos: the long versions of the fault and churn suites (make test
# runs short ones), then the table of the faults they injected (the
# CHAOS| lines the tests log, testkit.ReportChaos). Every suite runs even
# if one before it failed; the exit status is the first failure's.
set -uo pipefail
GO=${GO:-go}
log=${CHAOS_LOG:-$(mktemp -t setpoint-chaos.XXXXXX)}
: >"$log"
status=0
suite() { # env... -- package run-pattern
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  echo ">> $2 ($1) ${envs[*]}"
  env "${envs[@]}" "$GO" test -count=1 -v -timeout 40m -run "$2" "$1" 2>&1 | tee -a "$log" | grep -E '^(--- |FAIL|ok|PASS)'
  local st=${PIPESTATUS[0]}
  if [ "$st" -ne 0 ]; then
    [ "$status" -ne 0 ] || status=$st
    echo ">> $2 FAILED (log: $log)"
  fi
}
suite SETPOINT_APISERVER_KILLS=10 SETPOINT_ETCD_KILLS=3 SETPOINT_CHURN_APPS=100 -- ./test/e2e/ 'TestAppsConvergeThroughControlPlaneRestarts'
suite SETPOINT_OPERATOR_KILLS=100 SETPOINT_KILL_WIDGETS=500 -- ./operator/ 'TestOperatorSIGKILLs'
suite SETPOINT_RUN_KILLS=100 SETPOINT_KILL_APPS=500 -- ./test/e2e/ 'TestSetpointRunSIGKILLs'
suite SETPOINT_CUTOFF=30s -- ./operator/ 'TestLeaderCutOffStopsWritingAndExits'
suite SETPOINT_NS_OBJECTS=1000 -- ./operator/ 'TestNamespaceDeletionWithManyHandledObjects'
suite SETPOINT_RANDOM_EDITS=200 -- ./test/e2e/ 'TestRandomEditsConvergeExactly'
suite SETPOINT_CELERY_TASKS=200 SETPOINT_CELERY_MAX_SECONDS=20 -- ./test/process/ 'TestCeleryTasksThroughScaleCycles'
suite SETPOINT_PG_BLIPS=40 -- ./test/postgres/ 'TestNoFalseFailovers'
echo
{
  echo "fault|injected|survived|lost|duplicated|stuck|reconverge p50|p99"
  grep -o 'CHAOS|.*' "$log" | sed 's/^CHAOS|//'
} | awk -F'|' '{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } if (NF > m) m = NF }
  END { for (r = 1; r <= NR; r++) { for (i = 1; i <= m; i++) printf("%-" w[i] "s  ", c[r, i]); print "" } }'
echo "(full log: $log)"
exit "$status"
