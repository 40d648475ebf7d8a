# Evaluates an env spec for nixworkflow (nixlib/env.py builds `json`): returns one
# { attr; drv; } per derivation, in order. Instantiating writes each `.drv` file, whose path
# is the env's identity (it pins the whole build closure).
#
#   source.kind = "path":  import <path> args          (a local nixpkgs checkout or package set)
#   source.kind = "url":   import (fetchTarball { url; sha256; }) args
#   source.kind = "flake": (getFlake ref).legacyPackages.<system>, else .packages.<system>
#   source.kind = "nixpath": import <nixpkgs> args      (unpinned; only with --allow-unpinned)
#   file:                  a Nix file: a derivation, a list, or a set of them (optionally one attribute)
{ json }:
let
  spec = builtins.fromJSON json;
  guard = import ./guard.nix { inherit (spec) allowUnpinned; };
  inherit (builtins) isList isAttrs isFunction attrNames filter concatMap foldl' getAttr hasAttr typeOf;
  system = builtins.currentSystem;
  isDrv = v: isAttrs v && (v.type or null) == "derivation";
  call = v: if isFunction v then v (spec.source.args or { }) else v;

  source = s:
    if s.kind == "path" then call (import (/. + s.path))
    else if s.kind == "url" then call (import (builtins.fetchTarball { inherit (s) url sha256; }))
    else if s.kind == "unpinned-url" then call (import (builtins.fetchTarball s.url))
    else if s.kind == "nixpath" then call (import (builtins.findFile builtins.nixPath s.name))
    else if s.kind == "flake" then
      let f = builtins.getFlake s.ref; in
      if f ? legacyPackages.${system} then f.legacyPackages.${system}
      else if f ? packages.${system} then f.packages.${system}
      else throw "nixworkflow: flake ${s.ref} has neither legacyPackages.${system} nor packages.${system}"
    else throw "nixworkflow: unknown package source kind ${s.kind}";

  select = where: set: path: foldl'
    (v: a: if isAttrs v && hasAttr a v then getAttr a v
      else throw "nixworkflow: ${where} has no attribute '${builtins.concatStringsSep "." path}'")
    set path;

  one = label: v: if isDrv v then [ { attr = label; drv = v.drvPath; } ]
    else throw "nixworkflow: '${label}' is ${typeOf v}, not a derivation";

  # A file's value: a derivation, a list of derivations, or a set whose derivation attributes are taken.
  flatten = label: v:
    if isDrv v then one label v
    else if isList v then concatMap (x: flatten label x) v
    else if isAttrs v then concatMap (n: one n v.${n}) (filter (n: isDrv v.${n}) (attrNames v))
    else throw "nixworkflow: ${label} is ${typeOf v}, not a derivation, a list or a set of derivations";

  packages = if spec.packages == [ ] then [ ] else
    let pkgs = source spec.source; in
    map (p: { attr = builtins.concatStringsSep "." p; drv = (builtins.head (one (builtins.concatStringsSep "." p) (select "the package set" pkgs p))).drv; }) spec.packages;

  fromFile = if spec.file == null then [ ] else
    let v = guard.import (/. + spec.file); in
    if spec.attr == null then flatten spec.file v
    else flatten spec.attr (select spec.file v spec.attr);
in
packages ++ fromFile
