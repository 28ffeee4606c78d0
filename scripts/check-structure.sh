#!/usr/bin/env bash
# The layout rules of docs/architecture.md, checked rather than only written:
#   1. gateway/src/proxy/, filters/ and wasm/ never import crate::resources,
#      crate::translate or crate::controllers (they read `model/` and `telemetry`);
#   2. gateway/src/resources/ imports nothing of the gateway but crate::error,
#      crate::annotations and its own siblings, and gateway/src/annotations/ nothing but
#      crate::error, crate::model and its own siblings;
#   3. gateway/src/redis/ imports nothing of the gateway but its own siblings (a leaf the
#      data plane uses);
#   4. no Rust source file (sources and tests of every crate) passes 1,000 lines.
# An import is any path that resolves to the module, however it is written: `use` trees
# (`use crate::{model, translate::X}`, across lines), paths in code
# (`crate::translate::Cluster`), and relative ones (`super::super::resources`, resolved
# from the file's own module and any inline `mod`). Comments and strings do not count.
#
# Usage: scripts/check-structure.sh [ROOT]   (default: the repository)
#        scripts/check-structure.sh --self-test
# Prints `path:line: what` for each violation and exits 1 when there is one.
set -euo pipefail

MAX_LINES=1000

# Reads gateway/src files (paths relative to the root) and prints the import violations.
# Works on a copy of each line with comments and string/char literals blanked out, then on
# a token stream, so a `use` tree or a path split over lines is still one path.
IMPORTS_AWK='
function is_ident(t) { return t ~ /^[A-Za-z_][A-Za-z0-9_]*$/ }

# The module a file is: gateway/src/proxy/mod.rs -> proxy, gateway/src/wasm/host/mem.rs
# -> wasm::host::mem, gateway/src/lib.rs -> "" (the crate root).
function file_module(path,    p, parts, n, i, out) {
  p = path
  sub(/^gateway\/src\//, "", p)
  sub(/\.rs$/, "", p)
  n = split(p, parts, "/")
  if (n > 0 && parts[n] == "mod") n--
  if (n == 1 && (parts[1] == "lib" || parts[1] == "main")) n = 0
  out = ""
  for (i = 1; i <= n; i++) out = out (i > 1 ? "::" : "") parts[i]
  return out
}

function current_module(    i, out) {
  out = filemod
  for (i = 1; i <= modtop; i++) out = out (out == "" ? "" : "::") modname[i]
  return out
}

# `path` (segments joined by ::) as seen from module `from`, made absolute (without the
# leading crate::). "" when it does not start at crate/self/super (an external crate, a
# child module or a name imported by another `use`, which is checked where it is used).
function resolve(path, from,    s, n, m, mp, abs, alen, i, out, prefix) {
  n = split(path, s, "::")
  m = (from == "") ? 0 : split(from, mp, "::")
  if (s[1] == "crate") alen = 0
  else if (s[1] == "self" || s[1] == "super") {
    alen = m
    for (i = 1; i <= m; i++) abs[i] = mp[i]
    if (s[1] == "super") alen--
  } else return ""
  prefix = 1
  for (i = 2; i <= n; i++) {
    if (s[i] == "super" && prefix) { alen--; continue }
    if (s[i] == "self") continue
    prefix = 0
    abs[++alen] = s[i]
  }
  if (alen < 0) return "?"
  out = ""
  for (i = 1; i <= alen; i++) out = out (i > 1 ? "::" : "") abs[i]
  return out
}

function check(path, line,    abs, top, parts, key, msg, written) {
  abs = resolve(path, current_module())
  if (abs == "") return
  if (abs == "?") { top = "?" } else { split(abs, parts, "::"); top = parts[1] }
  if (top == "") return
  written = path
  sub(/::self$/, "", written)
  written = "`" written "`"
  if (written != "`crate::" abs "`") written = written " = crate::" abs
  msg = ""
  if (rule == "dataplane" && (top == "resources" || top == "translate" || top == "controllers" || top == "*" || top == "?"))
    msg = area "/ imports crate::" top " (" written "); proxy/, filters/ and wasm/ read model/ and telemetry only"
  if (rule == "resources" && top != "resources" && top != "error" && top != "annotations")
    msg = "resources/ imports crate::" top " (" written "); it may import only crate::error, crate::annotations and its siblings"
  if (rule == "redis" && top != "redis")
    msg = "redis/ imports crate::" top " (" written "); it is a leaf and imports only its siblings"
  if (rule == "annotations" && top != "annotations" && top != "error" && top != "model")
    msg = "annotations/ imports crate::" top " (" written "); it may import only crate::error, crate::model and its siblings"
  if (msg == "") return
  key = FILENAME ":" line ":" top
  if (key in seen) return
  seen[key] = 1
  printf "%s:%d: %s\n", FILENAME, line, msg
  found++
}

# Expand a finished `use` tree (tokens ut[1..un], lines ul[]) into paths and check each.
function expand_use(    i, t, sp, stack, cur, curline, skip) {
  sp = 0; stack[0] = ""; cur = ""; curline = 0; skip = 0
  for (i = 1; i <= un; i++) {
    t = ut[i]
    if (skip) { skip = 0; continue }
    if (t == "as") { skip = 1; continue }
    if (t == "::") continue
    if (t == "{") { sp++; stack[sp] = join2(stack[sp - 1], cur); cur = ""; continue }
    if (t == "," || t == "}") {
      if (cur != "") check(join2(stack[sp], cur), curline)
      cur = ""
      if (t == "}") sp--
      continue
    }
    if (is_ident(t) || t == "*") { cur = join2(cur, t); curline = ul[i]; continue }
  }
  if (cur != "") check(join2(stack[sp], cur), curline)
}

function join2(a, b) { return a == "" ? b : (b == "" ? a : a "::" b) }

function end_chain() {
  if (chain != "") check(chain, chainline)
  chain = ""
}

function token(t, ln) {
  if (inuse) {
    if (t == ";") { inuse = 0; expand_use(); return }
    ut[++un] = t; ul[un] = ln
    return
  }
  # A path in code: crate/self/super followed by ::segment...
  if (chain != "") {
    if (chainsep) {
      chainsep = 0
      if (is_ident(t)) { chain = chain "::" t; prev = t; return }
      end_chain()
    } else if (t == "::") {
      chainsep = 1; prev = t; return
    } else end_chain()
  }
  if (t == "use" && prev != "::") { inuse = 1; un = 0; prev = t; return }
  if ((t == "crate" || t == "self" || t == "super") && prev != "::") {
    chain = t; chainline = ln; chainsep = 0; prev = t; return
  }
  # Inline modules change what self/super mean inside them.
  if (t == "mod") { modstate = 1 }
  else if (modstate == 1 && is_ident(t)) { pending = t; modstate = 2 }
  else if (modstate == 2) {
    if (t == "{") { modtop++; modname[modtop] = pending; moddepth[modtop] = depth }
    modstate = 0
  } else modstate = 0
  if (t == "{") depth++
  if (t == "}") {
    depth--
    if (modtop > 0 && depth == moddepth[modtop]) modtop--
  }
  prev = t
}

# Blank out comments and literals, keeping the line structure.
function clean(line,    out, i, n, c, two, rest, j) {
  out = ""; i = 1; n = length(line)
  while (i <= n) {
    c = substr(line, i, 1)
    if (blk > 0) {
      two = substr(line, i, 2)
      if (two == "*/") { blk--; i += 2; continue }
      if (two == "/*") { blk++; i += 2; continue }
      i++; continue
    }
    if (str == 1) {
      if (c == "\\") { i += 2; continue }
      if (c == "\"") { str = 0; out = out "\""; }
      i++; continue
    }
    if (str == 2) {
      if (substr(line, i, 1 + rawhash) == rawclose) { str = 0; out = out "\""; i += 1 + rawhash; continue }
      i++; continue
    }
    two = substr(line, i, 2)
    if (two == "//") break
    if (two == "/*") { blk = 1; i += 2; continue }
    if (c == "\"") { str = 1; out = out "\""; i++; continue }
    if ((c == "r" || c == "b") && (i == 1 || substr(line, i - 1, 1) !~ /[A-Za-z0-9_]/)) {
      rest = substr(line, i)
      if (match(rest, /^b?r#*"/)) {
        rawhash = RLENGTH - (substr(rest, 1, 1) == "b" ? 3 : 2)
        rawclose = "\""
        for (j = 0; j < rawhash; j++) rawclose = rawclose "#"
        str = 2; out = out " \""; i += RLENGTH; continue
      }
    }
    # A char literal (blanked: it may be a quote or a brace); a lifetime stays.
    if (c == sq) {
      if (substr(line, i + 1, 1) == "\\") {
        j = index(substr(line, i + 3), sq)
        if (j > 0) { out = out " "; i = i + 3 + j; continue }
      } else if (substr(line, i + 2, 1) == sq) { out = out " "; i += 3; continue }
    }
    out = out c; i++
  }
  return out
}

BEGIN { sq = sprintf("%c", 39) }
FNR == 1 {
  filemod = file_module(FILENAME)
  split(filemod, fm, "::")
  area = fm[1]
  rule = ""
  if (area == "proxy" || area == "filters" || area == "wasm") rule = "dataplane"
  if (area == "resources" || area == "annotations" || area == "redis") rule = area
  blk = 0; str = 0; inuse = 0; un = 0; chain = ""; prev = ""; depth = 0; modtop = 0; modstate = 0
}
rule != "" {
  s = clean($0)
  while (s != "") {
    if (match(s, /^[ \t\r]+/)) { s = substr(s, RLENGTH + 1); continue }
    if (match(s, /^\$?[A-Za-z_][A-Za-z0-9_]*/)) { token(substr(s, 1, RLENGTH), FNR); s = substr(s, RLENGTH + 1); continue }
    if (substr(s, 1, 2) == "::") { token("::", FNR); s = substr(s, 3); continue }
    token(substr(s, 1, 1), FNR); s = substr(s, 2)
  }
}
END { end_chain(); exit(found > 0 ? 1 : 0) }
'

# Prints violations under ROOT; returns 1 when there is one.
check_tree() {
  local root=$1 status=0
  (
    cd "$root"
    local files=()
    if [ -d gateway/src ]; then
      while IFS= read -r f; do files+=("$f"); done < <(find gateway/src -name '*.rs' | LC_ALL=C sort)
    fi
    if [ ${#files[@]} -gt 0 ]; then
      awk "$IMPORTS_AWK" "${files[@]}" || status=1
    fi
    # Every crate's sources, tests, benches, examples: all *.rs outside build output.
    while IFS= read -r f; do
      n=$(wc -l <"$f")
      if [ "$n" -gt "$MAX_LINES" ]; then
        echo "$f:$((MAX_LINES + 1)): $n lines, over the limit of $MAX_LINES; split it along its sections"
        status=1
      fi
    done < <(find . \( -name target -o -name node_modules -o \( -name '.*' ! -name . \) \) -prune \
      -o -name '*.rs' -type f -print |
      sed 's|^\./||' | LC_ALL=C sort)
    exit "$status"
  )
}

self_test() {
  local fails=0
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  mk() { mkdir -p "$(dirname "$dir/t/$1")"; cat >"$dir/t/$1"; }

  # Allowed: model and telemetry imports, mentions in comments and strings, `$crate` in
  # macros, visibility paths, an inline test module's super::super that stays in proxy/,
  # a resources/ file importing crate::error and its siblings.
  mk gateway/src/lib.rs <<'EOF'
pub mod model;
pub mod proxy;
pub mod resources;
pub mod translate;
EOF
  mk gateway/src/proxy/mod.rs <<'EOF'
//! Not crate::translate: read model/ (a comment).
pub mod steps;
use crate::model::filter_settings::{FilterSettings, GzipSettings};
use crate::{model, model::Route};
use super::model::Cluster;
use telemetry::export::Provider;
pub(crate) fn f() -> &'static str { "crate::resources::Ingress in a string" }
pub(in crate::proxy) fn g() { let _c = 'x'; let _q = '"'; let _r = r#"use crate::translate;"#; }
macro_rules! m { () => { $crate::resources::X } }
/* use crate::controllers::ConfigmapMgr; /* nested */ still a comment */
EOF
  mk gateway/src/proxy/steps.rs <<'EOF'
use super::f;
fn h<'a>(x: &'a str) -> &'a str { x }
#[cfg(test)]
mod tests {
    use super::super::f;
    use super::*;
}
EOF
  mk gateway/src/resources/mod.rs <<'EOF'
pub mod ingress;
pub use ingress::Ingress;
use crate::error::FieldError;
use self::ingress::Backend;
EOF
  mk gateway/src/resources/ingress.rs <<'EOF'
use super::FieldError;
use crate::resources::mcpbridge::Registry;
use crate::error::{FieldError as E, Result};
use crate::annotations::IngressAnnotations;
EOF
  mk gateway/src/annotations/mod.rs <<'EOF'
mod destination;
use crate::error::FieldError;
use crate::model::Protocol;
use self::destination::Destination;
EOF
  mk telemetry/src/lib.rs <<'EOF'
pub mod export;
EOF
  seq 1 "$MAX_LINES" | sed 's|^|// line |' >"$dir/t/telemetry/src/export.rs"
  if ! out=$(check_tree "$dir/t" 2>&1); then
    echo "self-test: a clean tree was flagged:" >&2
    echo "$out" >&2
    fails=$((fails + 1))
  fi

  # Each case: a file added to the clean tree, and the lines that must be flagged
  # (path:line), nothing else.
  case_flags() {
    local name=$1 file=$2 want=$3 out got
    rm -rf "$dir/c" && cp -r "$dir/t" "$dir/c"
    mkdir -p "$(dirname "$dir/c/$file")"
    cat >"$dir/c/$file"
    if out=$(check_tree "$dir/c" 2>&1); then
      echo "self-test $name: not flagged (want $want)" >&2
      fails=$((fails + 1))
      return
    fi
    got=$(echo "$out" | grep -o '^[^:]*:[0-9]*' | LC_ALL=C sort -u | tr '\n' ' ' | sed 's/ $//')
    if [ "$got" != "$want" ]; then
      echo "self-test $name: flagged [$got], want [$want]:" >&2
      echo "$out" >&2
      fails=$((fails + 1))
    fi
  }
  case_flags use-line gateway/src/proxy/a.rs gateway/src/proxy/a.rs:2 <<'EOF'
use crate::model::Route;
use crate::translate::RouteTable;
EOF
  case_flags use-group-multiline gateway/src/wasm/b.rs "gateway/src/wasm/b.rs:4 gateway/src/wasm/b.rs:5" <<'EOF'
use crate::{
    model::Route,
    snapshot::Snapshot,
    resources::{self, Ingress as I},
    controllers::*,
};
EOF
  case_flags path-in-code gateway/src/filters/cors/mod.rs gateway/src/filters/cors/mod.rs:3 <<'EOF'
pub fn f(
    a: u32,
) -> Option<crate::controllers::GzipSettings> {
    None
}
EOF
  case_flags path-split-over-lines gateway/src/proxy/c.rs gateway/src/proxy/c.rs:1 <<'EOF'
type T = crate
    ::translate::Cluster;
EOF
  case_flags super-super gateway/src/proxy/d.rs gateway/src/proxy/d.rs:1 <<'EOF'
use super::super::resources::Ingress;
use super::steps;
EOF
  case_flags super-from-mod-rs gateway/src/wasm/mod.rs gateway/src/wasm/mod.rs:2 <<'EOF'
use super::model::Route;
fn f() { let _ = super::translate::build(); }
EOF
  case_flags inline-mod-super gateway/src/wasm/host/mem.rs gateway/src/wasm/host/mem.rs:4 <<'EOF'
use super::super::vm::Vm;
mod inner {
    use super::super::super::model::X;
    use super::super::super::super::controllers::Y;
}
EOF
  case_flags pub-use-alias gateway/src/proxy/e.rs gateway/src/proxy/e.rs:1 <<'EOF'
pub(crate) use crate::translate as t;
EOF
  case_flags resources-imports-translate gateway/src/resources/wasmplugin.rs \
    "gateway/src/resources/wasmplugin.rs:2 gateway/src/resources/wasmplugin.rs:3" <<'EOF'
use crate::error::FieldError;
use crate::translate::destination;
use crate::{error::E, model::M};
use super::ingress::Ingress;
EOF
  case_flags resources-mod-super gateway/src/resources/mod.rs gateway/src/resources/mod.rs:2 <<'EOF'
use super::error::FieldError;
use super::config_loop::Change;
EOF
  case_flags annotations-imports-translate gateway/src/annotations/timeout.rs \
    "gateway/src/annotations/timeout.rs:3" <<'EOF'
use super::FieldError;
use crate::model::Protocol;
use crate::translate::route_table;
EOF
  case_flags redis-imports-model gateway/src/redis/client.rs gateway/src/redis/client.rs:2 <<'EOF'
use super::resp::Reply;
use crate::model::Cluster;
EOF
  {
    echo 'fn main() {}'
    seq 1 "$MAX_LINES" | sed 's|^|// line |'
  } | case_flags too-long gateway/tests/big.rs "gateway/tests/big.rs:$((MAX_LINES + 1))"

  if [ "$fails" -gt 0 ]; then
    echo "check-structure self-test: $fails case(s) failed" >&2
    return 1
  fi
  echo "check-structure self-test: all cases pass"
}

if [ "${1:-}" = "--self-test" ]; then
  self_test
  exit
fi

root=${1:-"$(cd "$(dirname "$0")/.." && pwd)"}
if out=$(check_tree "$root"); then
  echo "structure: ok (imports of proxy/, filters/, wasm/, resources/, redis/; files under $MAX_LINES lines)"
else
  echo "$out"
  echo "structure: $(echo "$out" | grep -c .) violation(s) of the layout rules in docs/architecture.md" >&2
  exit 1
fi
