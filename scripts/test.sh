#!/usr/bin/env bash
# test.sh — THE test command: everything CI and a developer run.
#
#   scripts/test.sh            deps, build, C unit tests (ASan+UBSan), fuzzers
#                              (bounded), the Python extension, then pytest over
#                              tests/integration, tests/lifecycle (PID-namespace
#                              sandbox and containers) and tests/docker; then
#                              tests/integration again against the server
#                              built with ASan + UBSan (build-san/), all but
#                              the tests marked nosan (tests/conftest.py);
#                              that stage runs beside the pytest one (both
#                              mostly wait on servers and timeouts: one
#                              after the other, the CPUs sat idle).
#   FUZZ_SECONDS=N             seconds per fuzz target (default 20)
#   PYTEST_ARGS="..."          extra pytest arguments (e.g. "-x -k sigkill")
#                              for the pytest stage; both pytest stages list
#                              their 25 slowest tests (the budget's figures)
#
# Prints one summary line per stage and a table at the end; exits non-zero if
# any stage failed.  pytest's "no tests collected" (exit 5) is a failure.
# The container backend is never skipped silently: if Podman cannot run here,
# its tests fail with the reason.  Never: edits the system's Podman
# configuration (scripts/podman-env.sh keeps its own), pushes, or cleans the
# tree.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
PYTHON=/usr/bin/python3
declare -a NAMES=() RESULTS=() TIMES=()
failed=0
T_START=$(date +%s)
LOGDIR=build/test-logs
mkdir -p "$LOGDIR"

# stage NAME COMMAND... : run, tee output to build/test-logs/NAME.log, record.
stage() {
	local name=$1; shift
	local t0 rc log="$LOGDIR/$name.log"
	echo
	echo "=== [$name] $*"
	t0=$(date +%s)
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	record "$name" "$rc" $(( $(date +%s) - t0 )) "$log"
	return "$rc"
}

# record NAME RC SECONDS LOG : a stage's result, for the summary.
record() {
	NAMES+=("$1"); RESULTS+=("$2"); TIMES+=("$3")
	if [ "$2" -eq 0 ]; then
		echo "=== [$1] OK (${3}s)"
	else
		echo "=== [$1] FAILED with exit $2 (${3}s) — log: $4"
		failed=1
	fi
}

summary() {
	echo
	echo "=== summary"
	local i
	for i in "${!NAMES[@]}"; do
		if [ "${RESULTS[$i]}" -eq 0 ]; then r=ok; else r="FAILED (exit ${RESULTS[$i]})"; fi
		printf '  %-12s %-20s %5ss\n' "${NAMES[$i]}" "$r" "${TIMES[$i]}"
	done
	printf '  %-12s %-20s %5ss\n' total "(wall clock)" "$(( $(date +%s) - T_START ))"
	if [ "$failed" -eq 0 ]; then echo "=== ALL PASSED"; else echo "=== FAILURES — see $LOGDIR/"; fi
}
# A stage left running in the background (stage_bg) is interrupted with
# the script: SIGINT, so that pytest's teardown stops its servers.
BG_PID=
on_exit() {
	if [ -n "$BG_PID" ] && kill -0 "$BG_PID" 2>/dev/null; then
		kill -INT -- "-$BG_PID" 2>/dev/null
		wait "$BG_PID" 2>/dev/null
	fi
	summary
}
trap on_exit EXIT
trap 'failed=1; exit 130' INT TERM

# stage_bg NAME COMMAND... : start a stage in the background, in its own
# process group, its output only to build/test-logs/NAME.log (printed
# whole by stage_wait, so that it does not interleave with the stage in
# the foreground).  One at a time.
stage_bg() {
	local name=$1; shift
	echo
	echo "=== [$name] started in the background: $* (log: $LOGDIR/$name.log)"
	set -m
	(
		t0=$(date +%s)
		"$@" >"$LOGDIR/$name.log" 2>&1
		echo "$? $(( $(date +%s) - t0 ))" >"$LOGDIR/$name.status"
	) &
	BG_PID=$!
	set +m
}

# stage_wait NAME : wait for the background stage, print its log, record it.
stage_wait() {
	local name=$1 rc dt
	wait "$BG_PID"
	BG_PID=
	echo
	echo "=== [$name] (ran in the background)"
	cat "$LOGDIR/$name.log"
	read -r rc dt <"$LOGDIR/$name.status" 2>/dev/null || { rc=1; dt=0; }
	rm -f "$LOGDIR/$name.status"
	record "$name" "$rc" "$dt" "$LOGDIR/$name.log"
}

stage deps scripts/deps.sh build test container || exit 1
stage build make -j2 || exit 1
stage unit make -j2 unit
stage fuzz make -j2 --output-sync=target fuzz FUZZ_SECONDS="$FUZZ_SECONDS"
stage ext make ext

# Podman with this project's private configuration; the base image is built
# once per machine (cached under /var/cache/cunicorn-podman).  A failure here
# is recorded and the container tests will fail with the same reason.
if eval "$(scripts/podman-env.sh env)"; then
	export CONTAINERS_CONF CONTAINERS_STORAGE_CONF
fi
stage containers scripts/podman-env.sh check

pytest_run() {
	# -p no:cacheprovider: no .pytest_cache written into the tree.
	# shellcheck disable=SC2086
	"$PYTHON" -m pytest -q -p no:cacheprovider -rfEs --durations=25 ${PYTEST_ARGS:-} \
		tests/integration tests/lifecycle tests/docker
	local rc=$?
	if [ "$rc" -eq 5 ]; then
		echo "test.sh: pytest collected no tests — that is a failure"
	fi
	return "$rc"
}
# The whole server built with ASan + UBSan (build-san/), driven by every
# integration test: a new test file is covered without being listed here.
# A test that must not run there (memory figures that ASan's shadow memory
# inflates, tests that never start the server) carries
# @pytest.mark.nosan(reason=...), and -m leaves it out.  Any report is a
# failure: reports go to build-san/logs/, which must stay empty.  Leaks are
# not checked (CPython keeps its allocations at exit).
sanitized_run() {
	make -j2 san-bin >/dev/null || return 1
	rm -rf build-san/logs && mkdir -p build-san/logs
	local base rc
	base=$(mktemp -d /tmp/pytest-san-XXXXXX) || return 1
	CUNICORN_BIN_DIR=$PWD/build-san \
	ASAN_OPTIONS="detect_leaks=0:log_path=$PWD/build-san/logs/asan" \
	UBSAN_OPTIONS="print_stacktrace=1:log_path=$PWD/build-san/logs/ubsan" \
	"$PYTHON" -m pytest -q -p no:cacheprovider -rfE --durations=25 -m "not nosan" \
		--basetemp="$base" tests/integration
	rc=$?
	rm -rf "$base"
	if [ -n "$(ls -A build-san/logs)" ]; then
		echo "test.sh: sanitizer reports:"
		head -n 60 build-san/logs/*
		rc=1
	fi
	return "$rc"
}

# Both suites at once: each server has its own port, runtime directory and
# temporary files (the sanitized run its own pytest base directory, under
# /tmp: unix socket paths must stay short), and the tests' waits are bound
# generously (seconds) for a machine whose CPUs are busy.  The stage times
# in the summary overlap; the total is the wall clock.
stage_bg sanitized sanitized_run
stage pytest pytest_run
stage_wait sanitized

exit "$failed"
