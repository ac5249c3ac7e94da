#!/usr/bin/env bash
# test.sh — THE test command: everything CI and a developer run.
#
#   scripts/test.sh            deps, build, C unit tests (ASan+UBSan), fuzzers
#                              (bounded), the Python extension, then pytest over
#                              tests/integration, tests/lifecycle (PID-namespace
#                              sandbox and containers) and tests/docker; then
#                              tests/integration again against the server
#                              built with ASan + UBSan (build-san/), all but
#                              the tests marked nosan (tests/conftest.py).
#   FUZZ_SECONDS=N             seconds per fuzz target (default 20)
#   PYTEST_ARGS="..."          extra pytest arguments (e.g. "-x -k sigkill")
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
	local dt=$(( $(date +%s) - t0 ))
	NAMES+=("$name"); RESULTS+=("$rc"); TIMES+=("$dt")
	if [ "$rc" -eq 0 ]; then
		echo "=== [$name] OK (${dt}s)"
	else
		echo "=== [$name] FAILED with exit $rc (${dt}s) — log: $log"
		failed=1
	fi
	return "$rc"
}

summary() {
	echo
	echo "=== summary"
	local i
	for i in "${!NAMES[@]}"; do
		if [ "${RESULTS[$i]}" -eq 0 ]; then r=ok; else r="FAILED (exit ${RESULTS[$i]})"; fi
		printf '  %-12s %-20s %5ss\n' "${NAMES[$i]}" "$r" "${TIMES[$i]}"
	done
	if [ "$failed" -eq 0 ]; then echo "=== ALL PASSED"; else echo "=== FAILURES — see $LOGDIR/"; fi
}
trap summary EXIT

stage deps scripts/deps.sh build test container || exit 1
stage build make -j2 || exit 1
stage unit make unit
stage fuzz make fuzz FUZZ_SECONDS="$FUZZ_SECONDS"
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
	"$PYTHON" -m pytest -q -p no:cacheprovider -rfEs ${PYTEST_ARGS:-} \
		tests/integration tests/lifecycle tests/docker
	local rc=$?
	if [ "$rc" -eq 5 ]; then
		echo "test.sh: pytest collected no tests — that is a failure"
	fi
	return "$rc"
}
stage pytest pytest_run

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
	CUNICORN_BIN_DIR=$PWD/build-san \
	ASAN_OPTIONS="detect_leaks=0:log_path=$PWD/build-san/logs/asan" \
	UBSAN_OPTIONS="print_stacktrace=1:log_path=$PWD/build-san/logs/ubsan" \
	"$PYTHON" -m pytest -q -p no:cacheprovider -rfE -m "not nosan" \
		tests/integration
	local rc=$?
	if [ -n "$(ls -A build-san/logs)" ]; then
		echo "test.sh: sanitizer reports:"
		head -n 60 build-san/logs/*
		rc=1
	fi
	return "$rc"
}
stage sanitized sanitized_run

exit "$failed"
