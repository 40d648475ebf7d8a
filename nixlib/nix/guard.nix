# The pinning guard: imports a user's .nix file so that every unpinned source fails with a hint, and
# every local file the evaluation reads is traced (`nixworkflow-dep:PATH`) for nixworkflow's
# evaluation cache, and so is every environment variable it reads (`nixworkflow-getenv:NAME`): a
# cached evaluation must not outlive the `builtins.getEnv` value it was computed from. Reading the clock
# (`builtins.currentTime`, `nixworkflow-volatile:currentTime`) makes the evaluation uncacheable.
#
# Files under the Nix store are imported as usual: they are content-addressed, hence pinned, and
# Nix's own file cache keeps a large package set (nixpkgs) fast. Local files are imported through
# `scopedImport` with the checked fetchers below in scope, so the check follows every local import.
# `<nixpkgs>` needs no override: nixworkflow empties NIX_PATH, so Nix itself reports it with its
# file and line.
{ allowUnpinned ? false }:
let
  inherit (builtins) isAttrs isString substring stringLength trace toJSON match;
  inStore = p: let s = toString p; d = builtins.storeDir + "/"; in substring 0 (stringLength d) s == d;
  dep = p: v: if inStore p then v else trace "nixworkflow-dep:${toString p}" v;
  has = a: n: isAttrs a && a ? ${n} && a.${n} != null;
  url = a: if isString a then a else toString (a.url or a.path or "?");
  reject = what: how: throw "nixworkflow-unpinned: ${what} is not pinned. ${how}";
  checked = pinned: what: how: f: a: if allowUnpinned || pinned a then f a else reject (what a) (how a);
  hasHash = a: has a "sha256" || has a "hash";
  isRev = r: isString r && match "[0-9a-f]{40}" r != null;
  lockedRef = r: isString r && (match ".*[?&](rev=[0-9a-f]{40}|narHash=sha256-).*" r != null
    || match "(github|gitlab|sourcehut):[^/]+/[^/]+/[0-9a-f]{40}([?].*)?" r != null);

  fetchTarball = checked hasHash (a: "fetchTarball ${url a}")
    (a: "Add sha256 = \"<the output of: nix-prefetch-url --unpack ${url a}>\";") builtins.fetchTarball;
  fetchurl = checked hasHash (a: "fetchurl ${url a}")
    (a: "Add sha256 = \"<the output of: nix-prefetch-url ${url a}>\";") builtins.fetchurl;
  fetchGit = checked (a: has a "rev" && isRev a.rev) (a: "fetchGit ${url a}")
    (a: "Add rev = \"<40-character commit hash>\";") builtins.fetchGit;
  fetchMercurial = checked (a: has a "rev") (a: "fetchMercurial ${url a}")
    (a: "Add rev = \"<changeset id>\";") builtins.fetchMercurial;
  getFlake = checked lockedRef (a: "flake ${toJSON a}")
    (a: "Name a revision, e.g. github:NixOS/nixpkgs/<40-character commit>, or add ?rev=<commit> or &narHash=.")
    builtins.getFlake;
  fetchTree = checked (a: isAttrs a && (has a "rev" || has a "narHash") || lockedRef a) (a: "fetchTree ${toJSON a}")
    (a: "Add rev or narHash.") builtins.fetchTree;

  traced = f: p: dep p (f p);
  guarded = {
    inherit fetchTarball fetchurl fetchGit fetchMercurial getFlake;
    readFile = traced builtins.readFile;
    readDir = traced builtins.readDir;
    pathExists = traced builtins.pathExists;
    hashFile = t: traced (builtins.hashFile t);
    # Copying a local tree into the store: the copy's hash is in the result, so the tree is a dependency.
    path = a: dep (a.path or "") (builtins.path a);
    filterSource = f: p: dep p (builtins.filterSource f p);
    getEnv = n: trace "nixworkflow-getenv:${n}" (builtins.getEnv n);
    # The clock differs at every evaluation: an evaluation that read it is never cached (as Nix would, it gives a
    # new value, hence a new step, at every run, rather than the time of the first run forever).
    currentTime = trace "nixworkflow-volatile:currentTime" builtins.currentTime;
  } // (if builtins ? fetchTree then { inherit fetchTree; } else { });
  # Nix also names each builtin that is not a global `__NAME` (`__readFile`, `__getEnv`): the same guard.
  underscored = builtins.listToAttrs (map (n: { name = "__${n}"; value = guarded.${n}; })
    (builtins.filter (n: !(builtins.elem n [ "fetchTarball" "fetchGit" "fetchMercurial" ])) (builtins.attrNames guarded)));
  overrides = underscored // {
    import = p: if inStore p then builtins.import p else dep p (builtins.scopedImport overrides p);
    scopedImport = extra: p: builtins.scopedImport (overrides // extra) p;
    inherit fetchTarball fetchGit fetchMercurial;
    builtins = guardedBuiltins;
  };
  # (`builtins.builtins` is `builtins` itself in Nix: without the self-reference, `builtins.builtins.readFile ./x`
  # read a file untraced, and the evaluation cache served a result made from its old content)
  guardedBuiltins = builtins // guarded // { inherit (overrides) import scopedImport; builtins = guardedBuiltins; };
in
{
  # Import a user file with the guard; a function is called with its defaults (as nix-build does).
  import = p: let v = overrides.import p; in if builtins.isFunction v then v { } else v;
  # The same, not called: front.nix calls an experiment with the arguments given on nw's command line.
  importRaw = overrides.import;
}
