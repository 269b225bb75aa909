#!/usr/bin/env bash
# Prints deploy/istio/wasmplugin.yaml with the module fetched from URL over HTTPS and
# pinned by the sha256 of the .wasm you publish there: Istio's agent verifies the
# download against it and refuses a module that does not match.
#   deploy/istio/pin-module.sh https://example.com/streamtap/0.1.0/streamtap.wasm [dist/streamtap.wasm]
set -euo pipefail
url=${1:?usage: pin-module.sh URL [WASM]}
wasm=${2:-dist/streamtap.wasm}
here=$(dirname "${BASH_SOURCE[0]}")
[[ -f "$wasm" ]] || { echo "pin-module.sh: no module at $wasm (run make build)" >&2; exit 1; }
[[ "$url" == https://* || "$url" == oci://* ]] || { echo "pin-module.sh: URL must be https:// or oci://" >&2; exit 1; }
sha=$(sha256sum "$wasm" | cut -d' ' -f1)
# Replace the one `url:` line of the spec and put the checksum beside it.
awk -v url="$url" -v sha="$sha" '
  /^  url: / && !done { print "  url: " url; print "  sha256: " sha; done = 1; next }
  { print }
  END { if (!done) { print "pin-module.sh: no url line in the template" > "/dev/stderr"; exit 1 } }
' "$here/wasmplugin.yaml"
