#!/usr/bin/env bash
# The test command: builds Storage.sln (Release), runs every native-tests/*/*.Tests project natively,
# runs Storage.Parity.Tests again under the runtime's ISA switches, then publishes it for linux-arm64
# and runs it under qemu. Ends with one line "N passed, N failed, N skipped" summed over all runs;
# exits non-zero when a test failed or a run did not execute, crashed or ran no tests.
# Tests that need a system component fail instead of skipping when CI=true (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

results=artifacts/test-results
rm -rf "$results"
mkdir -p "$results"
passed=0 failed=0 skipped=0

# attr NAME TAG: the number in NAME="…" inside TAG, 0 when absent.
attr() { if [[ $2 =~ [[:space:]]$1=\"([0-9]+)\" ]]; then echo "${BASH_REMATCH[1]}"; else echo 0; fi; }

# run LABEL COMMAND...: runs one xUnit v3 test executable, reads its xUnit XML result and adds the counts.
# A run that exits non-zero with no failed test, writes no result (a crash) or runs no tests counts as one failure.
run() {
  local label=$1; shift
  local xml="$results/${label//[^A-Za-z0-9._-]/_}.xml" start=$SECONDS rc=0
  echo "=== $label"
  "$@" -noColor -noLogo -result-xml "$xml" || rc=$?
  local tag="" p f s total
  [[ -s $xml ]] && tag=$(grep -o '<assembly [^>]*>' "$xml" | head -n 1 || true)
  p=$(attr passed "$tag") f=$(( $(attr failed "$tag") + $(attr errors "$tag") ))
  s=$(( $(attr skipped "$tag") + $(attr not-run "$tag") )) total=$(attr total "$tag")
  if [[ -z $tag ]] || (( total == 0 )) || (( rc != 0 && f == 0 )); then
    echo "!!! $label: did not finish or ran no tests (exit code $rc, $total tests in the result)"
    f=$((f + 1))
  fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
  echo "--- $label: $p passed, $f failed, $s skipped ($((SECONDS - start))s)"
}

dotnet build Storage.sln -c Release -nologo

for project in native-tests/*/*.Tests.csproj; do
  name=$(basename "$project" .csproj)
  run "$name" "$(dirname "$project")/bin/Release/net10.0/$name"
done

# The suite again with the runtime's ISA switches (KernelRegistryTests asserts they took effect).
parity=native-tests/Storage.Parity.Tests/bin/Release/net10.0/Storage.Parity.Tests
for switch in EnableAVX2 EnableSSE42 EnableHWIntrinsic; do
  run "Storage.Parity.Tests DOTNET_$switch=0" env "DOTNET_$switch=0" "$parity"
done

# linux-arm64, self-contained, under qemu user-mode emulation (about 10-30x slower than native).
label="Storage.Parity.Tests linux-arm64"
qemu=""
[[ $(uname -m) == aarch64 ]] || qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
if [[ $(uname -m) != aarch64 && -z $qemu ]]; then
  if [[ ${CI:-} == true ]]; then
    echo "!!! $label: qemu-aarch64 is not installed (CI=true, so this is a failure)"
    failed=$((failed + 1))
  else
    echo "skipped: arm64 run needs qemu-user-static + binfmt-support (and libc6:arm64 libstdc++6:arm64 libssl3:arm64 libicu72:arm64; see .ci/run)"
    skipped=$((skipped + 1))
  fi
else
  out=artifacts/arm64/Storage.Parity.Tests
  rm -rf "$out"
  if dotnet publish native-tests/Storage.Parity.Tests -c Release -r linux-arm64 --self-contained -o "$out" -nologo; then
    # libisal2:arm64 cannot be co-installed with libisal2 (not Multi-Arch: same in Debian 12);
    # .ci/run unpacks it into /opt/isal-arm64. W^X double-mapping breaks qemu's JIT-code cache
    # (illegal instructions, crashes: dotnet/runtime#94909), so it is off for this run.
    isal=${ISAL_ARM64_DIR:-/opt/isal-arm64/usr/lib/aarch64-linux-gnu}
    run "$label" env DOTNET_EnableWriteXorExecute=0 LD_LIBRARY_PATH="$isal${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      ${qemu:+"$qemu"} "$out/Storage.Parity.Tests"
  else
    echo "!!! $label: dotnet publish failed"
    failed=$((failed + 1))
  fi
fi

echo "$passed passed, $failed failed, $skipped skipped"
(( failed == 0 ))
