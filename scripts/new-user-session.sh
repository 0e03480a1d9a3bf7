#!/usr/bin/env bash
# scripts/new-user-session.sh: a new user's first hour with mailtel, scripted.
#
# Clones this repository into a temporary directory, runs the Quick start's
# `router up` for 20 seconds and checks what the README says appears (its
# output lines, the log files under ./data/logs, the metrics on :9100, the
# health endpoint on :9101), then runs every other command of the README's
# shell blocks verbatim, in order, as a user would in one shell with the
# binaries on PATH (the README's own `go build -o bin/ ... && export PATH=...`).
# The commands come from README.md itself, through `go run ./scripts/readmecmds`
# (package docs, which the README test reads them with too), so this script
# cannot drift from the README.
#
#   go tool task first-hour                # or: bash scripts/new-user-session.sh
#   go tool task first-hour -- --full      # also the slow commands (go test ./...,
#                                          # benchmarks, fuzzing, deploy-check): +30 min
#   options: --full, --keep (keep the temporary directory; it is kept anyway
#            when something failed), --wait N (seconds a
#            service runs before the next command, default 5), --max-bytes SIZE
#            (set [streams] max-bytes of the clone's mailtel.toml before the Quick
#            start: every stream reserves it from the embedded server's storage,
#            75% of the free disk, so the shipped 2GiB needs about 14 GB free for
#            the Quick start's 5 streams and 17 GB for 6)
#
# How commands run:
#   run      in the foreground, with a time limit (3 minutes); must exit 0.
#   service  (router, sinks, publisher ingest, tail -f, a live sinks tail,
#            status --watch, cluster-up) in the background, in its own process
#            group; the next command starts N seconds later. The services of a
#            README section are stopped (SIGINT, then SIGKILL after 15 s) when
#            the script leaves that section: a service passes when it was still
#            running then and logged no error.
#   slow     deferred to the end and run only with --full (else SKIP).
#   env      names a host of the user's own network (a URL of *.example.com,
#            nats://n1): run
#            with a 20 s limit and reported as ENV, not as a failure.
# A command that sets shell state (NAME=value, export) runs in this shell.
#
# Stand-ins for what only a user's environment has, each announced as it is
# set up: events.jsonl and exported.jsonl (a few Stalwart and Dovecot events);
# a webhook receiver on 127.0.0.1:18090 (scripts/standin-webhook) for the
# SIEM: after the Quick start, [webhook.siem] of the clone's mailtel.toml is
# uncommented as the README invites, with its url pointed at the receiver,
# which rejects the first 50 events (so that the dead-letter commands have
# dead letters to show and re-drive); new.toml (mailtel.toml plus a webhook
# "newhook" to the receiver); and a router left running in "another
# terminal" (`router --config mailtel.toml` from the clone), which hosts the
# embedded NATS server for the commands after the Quick start.
#
# Prints, for each command, PASS/FAIL/SKIP/ENV, its README line, exit code,
# duration and the first lines of its output; exits non-zero if any command
# or check failed (the stand-in receiver's 400s are expected, not errors).
# Uses the README's fixed ports (4222, 8025, 9100-9103,
# 14222-14224) and refuses to start while any of them is taken.
set -euo pipefail

full=0 keep=0 wait_s=5 max_bytes=""
while [[ $# -gt 0 ]]; do
	case $1 in
	--full) full=1 ;;
	--max-bytes) max_bytes=$2; shift ;;
	--keep) keep=1 ;;
	--wait) wait_s=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
	*) echo "new-user-session: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

src=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
started=$SECONDS
run_limit=180 slow_limit=2400 env_limit=20 up_seconds=20
standin_port=18090

for port in 4222 6222 8025 9100 9101 9102 9103 14222 14223 14224 "$standin_port"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "new-user-session: 127.0.0.1:$port is taken by another process; the README's commands need it (stop it first)" >&2
		exit 1
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/mailtel-first-hour.XXXXXX")
yesterday_existed=0
[[ -e /tmp/yesterday ]] && yesterday_existed=1
declare -a svc_pids=() svc_lines=() svc_texts=() svc_logs=() svc_t0=()
backdrop_pid="" standin_pid=""
pass=0 fail=0 skip=0 envn=0
declare -a failures=() envs=()

# stop_group PID: SIGINT to the process group PID leads, SIGKILL after 15 s.
# Sets stop_rc to its exit status.
stop_group() {
	local pid=$1 i
	kill -INT -- "-$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	stop_rc=0
	wait "$pid" 2>/dev/null || stop_rc=$?
}

cleanup() {
	local pid
	set +e
	for pid in "${svc_pids[@]}" $backdrop_pid $standin_pid; do
		[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && stop_group "$pid"
	done
	[[ $yesterday_existed == 0 ]] && rm -rf /tmp/yesterday
	if [[ $keep == 1 || $fail != 0 ]]; then
		echo "kept $work (every command's output is in logs/)"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# spawn LOG TEXT: runs TEXT (eval'd, as the user's shell would) in the
# background, in its own process group, output to LOG; sets pid.
spawn() {
	set -m
	(set +euo pipefail; eval "$2") >"$1" 2>&1 </dev/null &
	pid=$!
	set +m
}

# show FILE: the first lines of a command's output, indented.
show() {
	local n
	n=$(wc -l <"$1")
	head -n 4 "$1" | cut -c1-160 | sed 's/^/         | /'
	if ((n > 4)); then echo "         | ... ($n lines)"; fi
}

# report VERDICT LINE TEXT DETAIL LOG
report() {
	printf '%-6s README.md:%-4s %s\n         %s\n' "$1" "$2" "$3" "$4"
	[[ -n ${5:-} && -s ${5:-} ]] && show "$5"
	case $1 in
	PASS) pass=$((pass + 1)) ;;
	FAIL) fail=$((fail + 1)); failures+=("README.md:$2 $3 ($4)") ;;
	SKIP) skip=$((skip + 1)) ;;
	ENV) envn=$((envn + 1)); envs+=("README.md:$2 $3") ;;
	esac
	return 0
}

# errors_in LOG: the error lines a process logged (console or JSON format).
errors_in() {
	# An event of level error, as a log sink writes it ({"id":...}), is
	# what the command shows, not an error of the command.
	grep -E ' (ERR|FTL) |"level":"(error|fatal)"|^(router|sinks|publisher): ' "$1" |
		grep -v -e 'rejected by the stand-in receiver' -e '^{"id":' || true
}

# run_fg LINE TEXT LIMIT: runs TEXT in the background of a subshell and
# waits for it at most LIMIT seconds. Sets rc (124: timed out) and log.
run_fg() {
	local line=$1 text=$2 limit=$3 i
	log="$work/logs/L$line.log"
	spawn "$log" "$text"
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		stop_group "$pid"
		rc=124
		return
	fi
	rc=0
	wait "$pid" || rc=$?
}

# outcome: "exit RC, Ns" of the last run_fg, or that it timed out.
outcome() {
	if [[ $rc == 124 ]]; then
		echo "timed out after $((SECONDS - t0))s, stopped"
	else
		echo "exit $rc, $((SECONDS - t0))s"
	fi
}

# start_service LINE TEXT
start_service() {
	local line=$1 text=$2 log="$work/logs/L$1.log"
	spawn "$log" "$text"
	svc_pids+=("$pid") svc_lines+=("$line") svc_texts+=("$text") svc_logs+=("$log") svc_t0+=("$SECONDS")
	printf 'START  README.md:%-4s %s\n' "$line" "$text"
	sleep "$wait_s"
}

# stop_services: stops the services of the section, oldest last, and
# reports each.
stop_services() {
	local i pid alive errs
	for ((i = ${#svc_pids[@]} - 1; i >= 0; i--)); do
		pid=${svc_pids[i]}
		alive=0
		kill -0 "$pid" 2>/dev/null && alive=1
		stop_group "$pid"
		errs=$(errors_in "${svc_logs[i]}")
		local detail="service: ran $((SECONDS - svc_t0[i]))s"
		if [[ $alive == 1 ]]; then
			detail+=", stopped (exit $stop_rc)"
		else
			detail+=", ended by itself (exit $stop_rc)"
		fi
		if [[ $alive == 0 && $stop_rc != 0 ]] || [[ -n $errs ]]; then
			[[ -n $errs ]] && detail+=", logged errors: $(head -n 1 <<<"$errs" | cut -c1-200)"
			report FAIL "${svc_lines[i]}" "${svc_texts[i]}" "$detail" "${svc_logs[i]}"
		else
			report PASS "${svc_lines[i]}" "${svc_texts[i]}" "$detail" "${svc_logs[i]}"
		fi
	done
	svc_pids=() svc_lines=() svc_texts=() svc_logs=() svc_t0=()
}

# check WHAT COMMAND...: one of the Quick start checks.
check() {
	local what=$1
	shift
	if "$@" >"$work/logs/check.log" 2>&1; then
		report PASS "-" "check: $what" "$(head -n 1 "$work/logs/check.log" | cut -c1-150)"
	else
		report FAIL "-" "check: $what" "see below" "$work/logs/check.log"
	fi
}

# check_up LOG: what the README says `router up` prints and writes.
check_up() {
	local log=$1 today
	today=$(date -u +%F)
	check "router up prints 'configuration: mailtel.toml'" grep -x 'configuration: mailtel.toml' "$log"
	check "router up prints where the log sink writes" grep -E "^sink log +writes json lines to $PWD/data/logs/mailtel\.\*$" "$log"
	check "router up prints where the metrics sink serves" grep -E '^sink metrics +serves http://127\.0\.0\.1:9100/metrics$' "$log"
	check "router up prints where the security sink writes" grep -E "^sink security +writes text lines to $PWD/data/logs/security\.\*$" "$log"
	check "router up prints its health line" grep -E '^health and pipeline metrics on http://127\.0\.0\.1:9101/readyz and /metrics; Ctrl-C stops$' "$log"
	check "router up prints a progress line every five seconds" \
		bash -c "grep -E '^[0-9]{2}:[0-9]{2}:[0-9]{2} published [0-9]+, routed [0-9]+ copies, written [0-9]+$' '$log' | tail -n 1 | grep -Ev 'published 0,'"
	check "data/logs/mailtel.$today holds JSON lines" bash -c "test -s data/logs/mailtel.$today && head -n 1 data/logs/mailtel.$today | jq -e .id"
	check "data/logs/security.$today holds Stalwart-format lines" \
		bash -c "test -s data/logs/security.$today && grep -Em1 '^[0-9-]{10}T[0-9:]{8}Z (TRACE|DEBUG|INFO|WARN|ERROR) .* \([a-z0-9-]+\.[a-z0-9-]+\)' data/logs/security.$today"
	check "127.0.0.1:9100/metrics has mailtel_events_total" bash -c "curl -sf 127.0.0.1:9100/metrics | grep -m1 '^mailtel_events_total'"
	check "127.0.0.1:9101/readyz answers" curl -sf 127.0.0.1:9101/readyz
}

# setup_user_env: the stand-ins for the user's environment (see the top).
setup_user_env() {
	echo
	echo "== stand-ins for the user's environment"
	go build -o "$work/standin/" ./scripts/standin-webhook ./cmd/router
	spawn "$work/logs/standin-webhook.log" "'$work/standin/standin-webhook' -listen 127.0.0.1:$standin_port -log '$work/webhook-bodies.log' -reject 50"
	standin_pid=$pid
	echo "stand-in: a webhook receiver on http://127.0.0.1:$standin_port (rejects the first 50 events with 400), bodies in webhook-bodies.log"
	# Uncomment [webhook.siem] and point it at the receiver.
	awk -v url="http://127.0.0.1:$standin_port/siem" '
		/^# \[webhook\.siem\]/ { on = 1 }
		on && /^# / && (/^# \[/ || / = /) { sub(/^# /, ""); if ($1 == "url") $0 = "url = \"" url "\"" ; print; next }
		{ on = 0; print }' mailtel.toml >"$work/mailtel.toml" && cp "$work/mailtel.toml" mailtel.toml
	grep -q '^\[webhook\.siem\]' mailtel.toml
	export SIEM_SIGNATURE_KEY=first-hour-signature-key
	echo "stand-in: [webhook.siem] of mailtel.toml uncommented, url = http://127.0.0.1:$standin_port/siem, SIEM_SIGNATURE_KEY set"
	{ cat mailtel.toml; printf '\n[webhook.newhook]\nurl = "http://127.0.0.1:%s/newhook"\nevents = ["auth.*"]\n' "$standin_port"; } >new.toml
	echo "stand-in: new.toml = mailtel.toml + [webhook.newhook] (auth.* to the receiver)"
	cat >events.jsonl <<-'EOF'
		{"id":"17647154680","createdAt":"2026-11-27T14:59:28Z","type":"auth.success","data":{"accountName":"postmaster@example.com","accountId":3,"remoteIp":"2a12:bec4:1be0:a8f1::1"}}
		{"id":"17647154683","createdAt":"2026-11-27T14:59:30Z","type":"auth.failed","data":{"accountName":"mallory","remoteIp":"203.0.113.7"}}
		{"event":"auth_request_finished","hostname":"mx1","start_time":"2026-11-27T14:59:56.588053Z","end_time":"2026-11-27T14:59:56.588270Z","categories":["service:auth","auth"],"fields":{"success":"yes","mechanism":"PLAIN","service":"imap","remote_ip":"127.0.0.1","user":"alice"}}
	EOF
	cat >exported.jsonl <<-'EOF'
		{"event":"imap_command_finished","hostname":"mx1","start_time":"2026-11-27T15:00:01.000100Z","end_time":"2026-11-27T15:00:01.000400Z","categories":["imap"],"fields":{"cmd_name":"SELECT","user":"alice"}}
	EOF
	echo "stand-in: events.jsonl (2 Stalwart events, 1 Dovecot event) and exported.jsonl (1 Dovecot event)"
	spawn "$work/logs/backdrop-router.log" "'$work/standin/router' --config mailtel.toml"
	backdrop_pid=$pid
	echo "stand-in: 'router --config mailtel.toml' running in the user's other terminal (hosts NATS on 127.0.0.1:4222)"
	sleep 3
	check_backdrop
	echo
}

# check_backdrop: the commands after the Quick start need the stand-in
# router (and its NATS server): without it, stop here rather than let
# every command wait 30 s for NATS and fail.
check_backdrop() {
	if [[ -n $backdrop_pid ]] && ! kill -0 "$backdrop_pid" 2>/dev/null; then
		report FAIL "-" "stand-in: router --config mailtel.toml (the user's other terminal)" "it stopped; every command after this needs it; its last lines:"
		tail -n 15 "$work/logs/backdrop-router.log" | cut -c1-200 | sed 's/^/         | /'
		echo
		echo "== stopped early: $pass passed, $fail failed; $((SECONDS - started))s"
		for f in "${failures[@]}"; do echo "FAIL $f"; done
		exit 1
	fi
}

echo "== new user session: $work"
if [[ -n $(git -C "$src" status --porcelain --untracked-files=no) ]]; then
	echo "note: $src has uncommitted changes; the clone has only what is committed ($(git -C "$src" rev-parse --short HEAD))"
fi
git clone -q "$src" "$work/mailtel"
cd "$work/mailtel"
mkdir -p "$work/logs"
echo "cloned $(git rev-parse --short HEAD) into $PWD"
if [[ -n $max_bytes ]]; then
	sed -i "s/^max-bytes = .*/max-bytes = \"$max_bytes\"/" mailtel.toml
	grep -qx "max-bytes = \"$max_bytes\"" mailtel.toml
	echo "deviation (--max-bytes): [streams] max-bytes = \"$max_bytes\" in the clone's mailtel.toml"
fi
go run ./scripts/readmecmds README.md >"$work/commands.tsv"
echo "$(wc -l <"$work/commands.tsv") commands in README.md's shell blocks"
echo

section="" up_done=0 env_ready=0
declare -a deferred=()
while IFS=$'\t' read -r block line kind sec text; do
	if [[ $sec != "$section" ]]; then
		stop_services
		if [[ $up_done == 1 && $env_ready == 0 ]]; then
			setup_user_env
			env_ready=1
		fi
		check_backdrop
		section=$sec
		echo "== $section"
	fi
	if [[ $text =~ https?://[^[:space:]]*example\.com|nats://n[0-9]+[:/,] ]]; then
		t0=$SECONDS
		run_fg "$line" "$text" "$env_limit"
		if [[ $rc == 124 ]]; then
			report ENV "$line" "$text" "needs the user's network: still running after $((SECONDS - t0))s, stopped" "$log"
		else
			report ENV "$line" "$text" "needs the user's network: exit $rc after $((SECONDS - t0))s" "$log"
		fi
		continue
	fi
	case $kind in
	slow)
		deferred+=("$line"$'\t'"$text")
		continue
		;;
	service)
		start_service "$line" "$text"
		if [[ $text == *"router up"* && $up_done == 0 ]]; then
			sleep $((up_seconds - wait_s))
			check_up "${svc_logs[-1]}"
			up_done=1
		fi
		continue
		;;
	esac
	if [[ $text =~ ^[A-Za-z_][A-Za-z0-9_]*=[^[:space:]]*$ || $text == *"export "* ]]; then
		# Sets shell state: runs in this shell, as the user's would.
		t0=$SECONDS
		log="$work/logs/L$line.log"
		rc=0
		set +euo pipefail
		eval "$text" >"$log" 2>&1 </dev/null
		rc=$?
		set -euo pipefail
	else
		t0=$SECONDS
		run_fg "$line" "$text" "$run_limit"
	fi
	if [[ $rc == 0 ]]; then
		report PASS "$line" "$text" "exit 0, $((SECONDS - t0))s" "$log"
	else
		report FAIL "$line" "$text" "$(outcome)" "$log"
	fi
done <"$work/commands.tsv"
stop_services
if [[ -n $backdrop_pid ]]; then
	stop_group "$backdrop_pid"
	backdrop_pid=""
	if [[ -n $(errors_in "$work/logs/backdrop-router.log") ]]; then
		report FAIL "-" "stand-in router --config mailtel.toml" "logged errors" "$work/logs/backdrop-router.log"
	fi
fi

echo
echo "== slow commands"
declare -A done_slow=()
for d in "${deferred[@]}"; do
	line=${d%%$'\t'*} text=${d#*$'\t'}
	if [[ $full == 0 ]]; then
		report SKIP "$line" "$text" "slow: run with --full"
		continue
	fi
	if [[ -n ${done_slow[$text]:-} ]]; then
		report "${done_slow[$text]}" "$line" "$text" "same command as above"
		continue
	fi
	t0=$SECONDS
	run_fg "$line" "$text" "$slow_limit"
	if [[ $rc == 0 ]]; then
		report PASS "$line" "$text" "exit 0, $((SECONDS - t0))s" "$log"
		done_slow[$text]=PASS
	else
		report FAIL "$line" "$text" "$(outcome)" "$log"
		done_slow[$text]=FAIL
	fi
done

echo
echo "== $pass passed, $fail failed, $skip skipped, $envn need the user's network; $((SECONDS - started))s"
for f in "${failures[@]}"; do echo "FAIL $f"; done
for e in "${envs[@]}"; do echo "ENV  $e"; done
[[ $fail == 0 ]]
