# Evaluates an experiment.nix for `nw run`: every top-level attribute must be a step (or a set or
# list of steps at any depth, named `group.member`, `grid.0.1.32`); anything else is reported by name
# (the first member that is not a step, for a set) so `nw` can refuse it.
# An experiment that is a function is called with the parameters given on nw's command line (nix-build's --arg and
# --argstr): an --argstr's value comes in the JSON, an --arg's expression as nix-instantiate's own `--arg nwArgN EXPR`
# (so Nix parses it, relative to the working directory, as nix-build does); the others keep their defaults.
{ json, ... }@given:
let
  args = builtins.fromJSON json;
  guard = import ./guard.nix { inherit (args) allowUnpinned; };
  raw = guard.importRaw (/. + args.file);
  autoArgs = builtins.mapAttrs (n: a: if a ? str then a.str else given.${a.arg}) (args.autoArgs or { });
  params = if builtins.isFunction raw then builtins.functionArgs raw else { };
  # (a function with `...` takes them all, as nix-build passes them: args.passAll, read from the file's text)
  passAll = (args.passAll or false) && builtins.isFunction raw;
  unknownArgs = if passAll then [ ] else builtins.filter (n: !(params ? ${n})) (builtins.attrNames autoArgs);
  experiment = if builtins.isFunction raw then raw (if passAll then autoArgs else builtins.intersectAttrs params autoArgs)
    else raw;
  isStep = v: builtins.isAttrs v && v ? __nixworkflow;
  isDrv = v: builtins.isAttrs v && (v.type or null) == "derivation";
  article = t: if builtins.elem (builtins.substring 0 1 t) [ "a" "i" ] then "an ${t}" else "a ${t}";
  kind = v: if isDrv v then "a derivation" else if builtins.isAttrs v && v ? __nixworkflowStatic then "a static input"
    else if builtins.isFunction v then "a function" else article (builtins.typeOf v);
  # The members of a set or list (a list's by index), or null for anything else.
  members = v:
    if builtins.isAttrs v && !(isDrv v) && !(v ? __nixworkflowStatic) then
      map (n: { name = n; value = v.${n}; }) (builtins.attrNames v)
    else if builtins.isList v then builtins.genList (i: { name = toString i; value = builtins.elemAt v i; }) (builtins.length v)
    else null;
  join = a: b: if b == "" then a else "${a}.${b}";
  # The steps in a set or list of steps at any depth, as { steps = [ { name = "a.32"; value = record; } ]; } (names
  # relative to v), or { bad = "a.lr"; what = "an int"; } for the first member that is neither (it stops there, so
  # a package set bound by mistake is not walked). Deeper than 32 levels is not a sweep: a set that holds itself.
  walk = depth: v:
    let ms = members v; in
    if isStep v then { steps = [ { name = ""; value = v.__nixworkflow; } ]; }
    else if ms == null || depth > 32 then { bad = ""; what = kind v; }
    else if ms == [ ] then { bad = ""; what = "an empty ${builtins.typeOf v}"; }
    else builtins.foldl' (acc: m:
      if acc ? bad then acc else
      let r = walk (depth + 1) m.value; in
      if r ? bad then { bad = join m.name r.bad; inherit (r) what; }
      else { steps = acc.steps ++ map (s: { name = join m.name s.name; inherit (s) value; }) r.steps; })
      { steps = [ ]; } ms;
  describe = n: v:
    let pos = builtins.unsafeGetAttrPos n experiment; r = walk 0 v; in
    if isStep v then { step = v.__nixworkflow; inherit pos; }
    else if r ? steps then { group = builtins.listToAttrs r.steps; inherit pos; }
    else { notStep = r.what; inherit pos; } // (if r.bad == "" then { } else { member = r.bad; });
in
# A list, not a set: toJSON would print a set with an `outPath` attribute as that string.
if unknownArgs != [ ] then { inherit unknownArgs; params = builtins.attrNames params; isFunction = builtins.isFunction raw; }
else if isStep experiment then { notAttrs = "single step (return a set: { name = output ...; })"; }
else if builtins.isAttrs experiment then
  { attrs = map (n: describe n experiment.${n} // { name = n; }) (builtins.attrNames experiment); }
else { notAttrs = builtins.typeOf experiment; }
